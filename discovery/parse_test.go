package discovery_test

import (
	"testing"

	"github.com/lockstep-go/lockstep/discovery"
)

// ParseInstance reads what Register and etcd naming's endpoints.Manager
// write, and nothing else.
func TestParseInstance(t *testing.T) {
	lockstepValue := `{"Op":0,"Addr":"10.0.0.1:50051","Metadata":{"id":"a1","weight":3,"zone":"z1","status":"draining"}}`
	for _, tt := range []struct {
		key, value string
		ok         bool
		want       discovery.Instance
	}{
		{"/services/greeter/a1", lockstepValue, true, discovery.Instance{Service: "greeter", ID: "a1", Addr: "10.0.0.1:50051",
			Weight: 3, Zone: "z1", Status: discovery.Draining, Key: "/services/greeter/a1"}},
		{"/services/greeter/10.0.0.2:50051", `{"Op":0,"Addr":"10.0.0.2:50051"}`, true, discovery.Instance{Service: "greeter",
			ID: "10.0.0.2:50051", Addr: "10.0.0.2:50051", Status: discovery.Serving, Key: "/services/greeter/10.0.0.2:50051"}},
		{"/services/greeter/a1", `{"Op":1,"Addr":"10.0.0.1:50051"}`, false, discovery.Instance{}}, // a delete record
		{"/services/greeter/a1", `not json`, false, discovery.Instance{}},
		{"/services/greeter/a1", ``, false, discovery.Instance{}},
		{"a1", lockstepValue, false, discovery.Instance{}},                 // no service in the key
		{"/services/greeter/", lockstepValue, false, discovery.Instance{}}, // no ID
	} {
		got, ok := discovery.ParseInstance(tt.key, []byte(tt.value))
		if ok != tt.ok || !got.Equal(tt.want) || got.Key != tt.want.Key || got.Status != tt.want.Status {
			t.Errorf("ParseInstance(%q, %q) = %+v, %v; want %+v, %v", tt.key, tt.value, got, ok, tt.want, tt.ok)
		}
	}
}
