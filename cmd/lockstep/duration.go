package main

import (
	"strconv"
	"time"
)

// seconds is a duration flag that also takes a bare number of seconds, as
// etcdctl's users type them: "2" is 2s, "0.5" is 500ms; "2s" and "1m30s"
// are Go durations.
type seconds time.Duration

func (d *seconds) Set(s string) error {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		*d = seconds(f * float64(time.Second))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = seconds(v)
	return nil
}

func (d *seconds) String() string { return time.Duration(*d).String() }

// Get returns the time.Duration, which checkDurations looks at.
func (d *seconds) Get() any { return time.Duration(*d) }

// DurationVar registers a duration flag that also takes bare seconds.
func (f *cmdFlags) DurationVar(p *time.Duration, name string, value time.Duration, usage string) {
	*p = value
	f.Var((*seconds)(p), name, usage+" (a `duration`: 1m30s, or seconds)")
}

// Duration is DurationVar returning the variable.
func (f *cmdFlags) Duration(name string, value time.Duration, usage string) *time.Duration {
	p := new(time.Duration)
	f.DurationVar(p, name, value, usage)
	return p
}
