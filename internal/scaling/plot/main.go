// Command plot turns the output of the scaling benchmarks into the figures
// and tables of docs/scaling.md: one PNG per benchmark, recipe and metric,
// the participant count on a logarithmic axis, one line per
// implementation, and a Markdown table of every figure on stdout.
//
//	go test ./internal/scaling -run '^$' -bench . -benchtime 200x | tee scaling.txt
//	go run ./internal/scaling/plot -out docs/img < scaling.txt > scaling-tables.md
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// result is one line of benchmark output: Benchmark<bench>/<recipe>/n=<n>/<impl>.
type result struct {
	bench, recipe, impl string
	n                   int
	metrics             map[string]float64 // unit: value
}

var line = regexp.MustCompile(`^Benchmark(\w+)/(\w+)/n=(\d+)/(\w+)(?:-\d+)?\s+\d+\s+(.*)$`)

func parse(r io.Reader) ([]result, error) {
	var out []result
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		m := line.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		n, _ := strconv.Atoi(m[3])
		res := result{bench: m[1], recipe: m[2], n: n, impl: m[4], metrics: map[string]float64{}}
		f := strings.Fields(m[5])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("%q: %v", sc.Text(), err)
			}
			res.metrics[f[i+1]] = v
		}
		out = append(out, res)
	}
	return out, sc.Err()
}

// figure is one plot: a metric of one benchmark and recipe against n.
type figure struct{ bench, recipe, metric string }

func main() {
	out := flag.String("out", "docs/img", "directory for the PNG files")
	flag.Parse()
	results, err := parse(os.Stdin)
	if err != nil {
		log.Fatal(err)
	}
	if len(results) == 0 {
		log.Fatal("no scaling benchmark results on stdin")
	}
	series := map[figure]map[string]plotter.XYs{} // by implementation
	var figures []figure
	for _, r := range results {
		for unit, v := range r.metrics {
			if unit == "ns/op" {
				continue
			}
			f := figure{r.bench, r.recipe, unit}
			if series[f] == nil {
				series[f] = map[string]plotter.XYs{}
				figures = append(figures, f)
			}
			series[f][r.impl] = append(series[f][r.impl], plotter.XY{X: float64(r.n), Y: v})
		}
	}
	slices.SortFunc(figures, func(a, b figure) int {
		return strings.Compare(a.bench+a.recipe+a.metric, b.bench+b.recipe+b.metric)
	})
	for _, f := range figures {
		name := filepath.Join(*out, fmt.Sprintf("scaling-%s-%s-%s.png", strings.ToLower(f.bench), f.recipe, fileName(f.metric)))
		if err := draw(name, f, series[f]); err != nil {
			log.Fatal(err)
		}
		table(os.Stdout, f, series[f])
	}
}

func fileName(metric string) string {
	return strings.NewReplacer("/", "-per-", " ", "-").Replace(metric)
}

func draw(name string, f figure, byImpl map[string]plotter.XYs) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s %s: %s", f.recipe, strings.ToLower(f.bench), f.metric)
	p.X.Label.Text = "participants"
	p.Y.Label.Text = f.metric
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Legend.Top = true
	var args []any
	for _, impl := range sortedKeys(byImpl) {
		xys := byImpl[impl]
		slices.SortFunc(xys, func(a, b plotter.XY) int { return int(a.X - b.X) })
		args = append(args, impl, xys)
	}
	if err := plotutil.AddLinePoints(p, args...); err != nil {
		return err
	}
	return p.Save(12*vg.Centimeter, 8*vg.Centimeter, name)
}

// table prints the figure as a Markdown table: a row per n, a column per
// implementation.
func table(w io.Writer, f figure, byImpl map[string]plotter.XYs) {
	impls := sortedKeys(byImpl)
	fmt.Fprintf(w, "\n%s %s, %s:\n\n| n | %s |\n|---|%s\n", f.recipe, strings.ToLower(f.bench), f.metric,
		strings.Join(impls, " | "), strings.Repeat("---|", len(impls)))
	var ns []float64
	for _, xys := range byImpl {
		for _, xy := range xys {
			if !slices.Contains(ns, xy.X) {
				ns = append(ns, xy.X)
			}
		}
	}
	slices.Sort(ns)
	for _, n := range ns {
		row := []string{strconv.Itoa(int(n))}
		for _, impl := range impls {
			cell := "—"
			for _, xy := range byImpl[impl] {
				if xy.X == n {
					cell = strconv.FormatFloat(xy.Y, 'g', 4, 64)
				}
			}
			row = append(row, cell)
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
