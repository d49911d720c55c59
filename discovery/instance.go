package discovery

import (
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"strconv"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Status says whether an instance takes new calls.
type Status string

const (
	// Serving instances take new calls.
	Serving Status = "serving"
	// Draining instances finish the calls they have and take no new ones
	// while a serving instance of their service exists.
	Draining Status = "draining"
)

// Instance is one registered address of a service.
type Instance struct {
	Service string // required; no '/'
	ID      string // required, unique within the service; no '/'
	Addr    string // required, host:port with a host
	// Weight is the instance's share of calls under WeightedRoundRobin;
	// 0 means 1, negative is refused.
	Weight   int
	Zone     string
	Version  string
	Metadata map[string]string

	// Set by lockstep: Status by Register and Drain; Key, Revision (the
	// key's ModRevision) and Lease on instances that Watch reports.
	Status   Status
	Key      string
	Revision int64
	Lease    clientv3.LeaseID
}

// EffectiveWeight is Weight, with 0 read as 1.
func (in Instance) EffectiveWeight() int {
	if in.Weight <= 0 {
		return 1
	}
	return in.Weight
}

// Equal reports whether two instances have the same fields, so that an
// unchanged instance can be told from a changed one (gRPC compares
// address attributes with it).
func (in Instance) Equal(o Instance) bool {
	return in.Service == o.Service && in.ID == o.ID && in.Addr == o.Addr && in.Weight == o.Weight &&
		in.Zone == o.Zone && in.Version == o.Version && in.Status == o.Status && in.Key == o.Key &&
		in.Revision == o.Revision && in.Lease == o.Lease && maps.Equal(in.Metadata, o.Metadata)
}

func (in Instance) clone() Instance {
	in.Metadata = maps.Clone(in.Metadata)
	return in
}

// Validate reports what Register would refuse in: ErrInvalidService,
// ErrInvalidID, ErrInvalidAddr or ErrInvalidWeight. It does no I/O.
func (in Instance) Validate() error {
	if err := validService(in.Service); err != nil {
		return err
	}
	if in.ID == "" || strings.Contains(in.ID, "/") {
		return fmt.Errorf("%w: %q", ErrInvalidID, in.ID)
	}
	if err := validAddr(in.Addr); err != nil {
		return err
	}
	if in.Weight < 0 {
		return fmt.Errorf("%w: %d", ErrInvalidWeight, in.Weight)
	}
	return nil
}

func validService(s string) error {
	if s == "" || strings.Contains(s, "/") {
		return fmt.Errorf("%w: %q", ErrInvalidService, s)
	}
	return nil
}

func validAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%w: %q: %v", ErrInvalidAddr, addr, err)
	}
	if host == "" {
		return fmt.Errorf("%w: %q: no host (clients elsewhere could not reach it)", ErrInvalidAddr, addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%w: %q: port %q", ErrInvalidAddr, addr, port)
	}
	return nil
}

// The value under an instance's key is etcd naming's JSON (what its
// endpoints.Manager writes and its resolver reads), with lockstep's fields
// inside Metadata.
type wireValue struct {
	Op       int             `json:"Op"`
	Addr     string          `json:"Addr"`
	Metadata json.RawMessage `json:"Metadata,omitempty"`
}

type wireMetadata struct {
	ID       string            `json:"id"`
	Weight   int               `json:"weight"`
	Zone     string            `json:"zone,omitempty"`
	Version  string            `json:"version,omitempty"`
	Status   Status            `json:"status"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// encode returns the value written for in.
func (in Instance) encode() string {
	md, _ := json.Marshal(wireMetadata{ID: in.ID, Weight: in.Weight, Zone: in.Zone, Version: in.Version,
		Status: in.Status, Metadata: in.Metadata})
	v, _ := json.Marshal(wireValue{Addr: in.Addr, Metadata: md})
	return string(v)
}

// decode reads the instance under key (service/id relative to the
// prefix). A value written by anyone else in etcd naming's format reads as
// a serving instance of weight 1 whose ID is the rest of its key; a value
// that is not etcd naming's JSON, or a delete record (Op 1), is skipped.
func decode(service, id, value string) (Instance, bool) {
	var w wireValue
	if err := json.Unmarshal([]byte(value), &w); err != nil || w.Op != 0 || w.Addr == "" {
		return Instance{}, false
	}
	in := Instance{Service: service, ID: id, Addr: w.Addr, Status: Serving}
	var md wireMetadata
	if len(w.Metadata) > 0 && json.Unmarshal(w.Metadata, &md) == nil && md.ID == id {
		in.Weight, in.Zone, in.Version, in.Metadata = md.Weight, md.Zone, md.Version, md.Metadata
		if md.Status == Draining {
			in.Status = Draining
		}
	}
	if in.Weight < 0 {
		in.Weight = 0
	}
	return in, true
}

// ParseInstance reads an instance from one etcd key and its value, as
// Watch does: the key is <prefix>/<service>/<id>, the value etcd naming's
// JSON. It reports false for anything else. It sets Key; Revision and
// Lease are left to the caller, who has the key's metadata.
func ParseInstance(key string, value []byte) (Instance, bool) {
	dir, id, ok := cutLast(key)
	if !ok || id == "" {
		return Instance{}, false
	}
	_, service, ok := cutLast(dir)
	if !ok || service == "" {
		return Instance{}, false
	}
	in, ok := decode(service, id, string(value))
	if !ok {
		return Instance{}, false
	}
	in.Key = key
	return in, true
}

// cutLast splits s around its last '/'.
func cutLast(s string) (before, after string, found bool) {
	i := strings.LastIndexByte(s, '/')
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+1:], true
}

func leaseID(l int64) clientv3.LeaseID { return clientv3.LeaseID(l) }
