package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/lockstep-go/lockstep/internal/testutil"
)

func TestUsage(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout []string // substrings
		stderr []string
	}{
		{"no command", nil, exitUsage, []string{"usage: lockstep", "commands:"}, nil},
		{"help lists commands, exit codes and variables", []string{"--help"}, exitOK,
			[]string{"lock", "elect", "sem", "barrier", "queue", "status", "serve", "demo",
				"75 ", "76 ", "CMD's", "LOCKSTEP_ENDPOINTS", "SIGTERM"}, nil},
		{"unknown command", []string{"frobnicate"}, exitUsage, nil, []string{`unknown command "frobnicate"`}},
		{"lock help", []string{"lock", "--help"}, exitOK, []string{"usage: lockstep lock", "-try", "-grace", "-ttl", "-endpoints", "LOCKSTEP_TOKEN"}, nil},
		{"elect help", []string{"elect", "-h"}, exitOK, []string{"usage: lockstep elect", "-policy", "-id"}, nil},
		{"sem help", []string{"sem", "--help"}, exitOK, []string{"-limit", "-try"}, nil},
		{"barrier help", []string{"barrier", "--help"}, exitOK, []string{"hold", "release", "wait", "run", "enter", "leave"}, nil},
		{"barrier run help", []string{"barrier", "run", "--help"}, exitOK, []string{"-count", "LOCKSTEP_ROUND"}, nil},
		{"queue help", []string{"queue", "--help"}, exitOK, []string{"push", "pop", "len"}, nil},
		{"queue pop help", []string{"queue", "pop", "--help"}, exitOK, []string{"LOCKSTEP_ATTEMPTS", "-timeout"}, nil},
		{"status help", []string{"status", "--help"}, exitOK, []string{"cannot tell"}, nil},
		{"demo help", []string{"demo", "--help"}, exitOK, []string{"usage: lockstep demo"}, nil},
		{"serve help", []string{"serve", "--help"}, exitOK, []string{"usage: lockstep serve", "-data-dir"}, nil},
		{"version", []string{"version"}, exitOK, []string{"lockstep ", "etcd client v3.", "go1."}, nil},
		{"lock without name", []string{"lock"}, exitUsage, nil, []string{"want one NAME"}},
		{"unknown flag", []string{"lock", "/x", "--bogus"}, exitUsage, nil, []string{"-bogus", "lockstep lock --help"}},
		{"sem without limit", []string{"sem", "/x", "--", "true"}, exitUsage, nil, []string{"--limit"}},
		{"barrier run without count", []string{"barrier", "run", "/x", "--", "true"}, exitUsage, nil, []string{"--count"}},
		{"barrier run without command", []string{"barrier", "run", "/x", "--count", "2"}, exitUsage, nil, []string{"CMD"}},
		{"unknown barrier command", []string{"barrier", "open", "/x"}, exitUsage, nil, []string{`unknown command "open"`}},
		{"queue push without value", []string{"queue", "push", "/q"}, exitUsage, nil, []string{"NAME and VALUE"}},
		{"elect with a bad policy", []string{"elect", "/e", "--policy", "sometimes"}, exitUsage, nil, []string{"--policy"}},
		{"prefix ending in two slashes", []string{"lock", "/x//", "--", "true"}, exitUsage, nil, []string{"prefix"}},
		{"ttl under the minimum", []string{"lock", "--ttl", "1s", "/x", "--", "true"}, exitUsage, nil, []string{"ttl"}},
		{"etcd unreachable", []string{"lock", "--endpoints", "http://127.0.0.1:1", "--dial-timeout", "300ms", "/x", "--", "true"},
			exitError, nil, []string{"cannot reach etcd", "connection refused"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := invoke(t, ctx, tt.args...)
			r.wantCode(t, tt.code, tt.args...)
			for _, s := range tt.stdout {
				if !strings.Contains(r.stdout, s) {
					t.Errorf("stdout lacks %q:\n%s", s, r.stdout)
				}
			}
			for _, s := range tt.stderr {
				if !strings.Contains(r.stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
				}
			}
		})
	}
}

// --endpoints wins over LOCKSTEP_ENDPOINTS.
func TestEndpointsFlagOverridesEnvironment(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	good := strings.Join(testutil.Server(t).Endpoints(), ",")
	bad := append(env(t), envEndpoints+"=http://127.0.0.1:1")
	p := startCmd(t, built(t, "lockstep"), []string{"queue", "len", "--endpoints", good, "--dial-timeout", "300ms", testutil.Prefix(t)}, bad, nil)
	if code := p.wait(ctx); code != exitOK || strings.TrimSpace(p.stdout.String()) != "0" {
		t.Fatalf("exit code %d, stdout %q, stderr %q; want 0, \"0\"", code, p.stdout, p.stderr)
	}
	p = startCmd(t, built(t, "lockstep"), []string{"queue", "len", "--dial-timeout", "300ms", testutil.Prefix(t)}, bad, nil)
	if code := p.wait(ctx); code != exitError {
		t.Fatalf("with only the bad variable: exit code %d, want %d", code, exitError)
	}
}

// Every command and subcommand prints its help: none registers a flag
// twice (config watch had --key, etcdctl's name for the TLS key).
func TestEveryCommandHelps(t *testing.T) {
	groups := map[string][]command{"barrier": barrierCommands, "config": configCommands, "queue": queueCommands, "svc": svcCommands}
	for _, c := range commands {
		args := [][]string{{c.name, "--help"}}
		for _, sub := range groups[c.name] {
			args = append(args, []string{c.name, sub.name, "--help"})
		}
		for _, a := range args {
			var out, errOut strings.Builder
			if code := run(context.Background(), a, &out, &errOut); code != exitOK {
				t.Errorf("lockstep %s: exit %d\n%s", strings.Join(a, " "), code, errOut.String())
			}
		}
	}
}
