package httpapi

import "github.com/lullhq/lull/internal/queue"

// healthReporter is a Publisher that can say why it is not ready, as
// *queue.Publisher does.
type healthReporter interface {
	Health() queue.Health
}

// brokerHealth asks the publisher whether it is ready and, when it can
// tell, why not; one that cannot tell answers "not ready".
func brokerHealth(p Publisher) (bool, string) {
	if hr, ok := p.(healthReporter); ok {
		h := hr.Health()
		return h.Ready, h.Reason
	}
	if p.Ready() {
		return true, ""
	}
	return false, "not ready"
}
