package discovery

import (
	"google.golang.org/grpc/attributes"
	"google.golang.org/grpc/resolver"
)

type attrKey struct{}

// attr carries an Instance in gRPC endpoint attributes, which compare
// their values with Equal.
type attr struct{ in Instance }

func (a attr) Equal(o any) bool {
	b, ok := o.(attr)
	return ok && a.in.Equal(b.in)
}

// endpointOf returns the endpoint that stands for in: its address, with
// the instance in the endpoint's attributes, which the balancer reads and
// which can change (a weight, a drain) without gRPC reconnecting.
func endpointOf(in Instance) resolver.Endpoint {
	return resolver.Endpoint{
		Addresses:  []resolver.Address{{Addr: in.Addr}},
		Attributes: attributes.New(attrKey{}, attr{in.clone()}),
	}
}

// InstanceOf returns the instance that an endpoint from lockstep's
// resolver stands for: every field of the registration, for a balancer
// or an interceptor to use.
func InstanceOf(ep resolver.Endpoint) (Instance, bool) {
	a, ok := ep.Attributes.Value(attrKey{}).(attr)
	if !ok {
		return Instance{}, false
	}
	return a.in.clone(), true
}
