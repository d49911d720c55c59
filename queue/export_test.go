package queue

import "fmt"

// AsIfAlone makes q coordinate with no other Queue of this process, as if
// it ran in a process of its own: tests use it to see consumers of many
// processes compete.
func AsIfAlone(q *Queue) {
	q.localKey = fmt.Sprintf("%s#%p", q.prefix, q)
}
