package discovery

import (
	"slices"
	"strings"

	"github.com/lockstep-go/lockstep/cache"
	"github.com/lockstep-go/lockstep/internal/keys"
)

// dirOf checks prefix and returns the range that holds every service's
// instances: the prefix with one trailing '/', so "/services" and
// "/services/" mean the same.
func dirOf(prefix string) (string, error) {
	if err := keys.CheckPrefix(prefix); err != nil {
		return "", err
	}
	return keys.Dir(strings.TrimSuffix(prefix, "/")), nil
}

// instanceKey is where an instance of service lives under dir.
func instanceKey(dir, service, id string) string { return dir + service + "/" + id }

// instancesIn returns the instances of service in snap, sorted by ID.
func instancesIn(snap cache.Snapshot, dir, service string) []Instance {
	under := dir + service + "/"
	var out []Instance
	for k, kv := range snap.Under(under) {
		in, ok := decode(service, k[len(under):], kv.Value)
		if !ok {
			continue
		}
		in.Key, in.Revision, in.Lease = k, kv.ModRevision, leaseID(kv.Lease)
		out = append(out, in)
	}
	sortByID(out)
	return out
}

func sortByID(list []Instance) {
	slices.SortFunc(list, func(a, b Instance) int { return strings.Compare(a.ID, b.ID) })
}
