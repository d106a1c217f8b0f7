package harness

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// OutputLines is the output of the processes whose name starts with
// prefix ("worker", "api") that contain substr. It needs Options.Bench:
// the deployment then keeps process output.
func (d *Deployment) OutputLines(prefix, substr string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, line := range d.output {
		if strings.HasPrefix(line, prefix) && strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return out
}

// logMsg finds the message of a log line (slog's text format), logOp the
// Redis operation it names, if any.
var (
	logMsg = regexp.MustCompile(`level=(WARN|ERROR) msg=("(?:[^"\\]|\\.)*"|\S+)`)
	logOp  = regexp.MustCompile(` op=("[^"]*"|\S+)`)
)

// ProblemSummary counts the warnings and errors of the processes whose name
// starts with prefix, by message (and op), most frequent first: "12 x WARN
// append failed, retrying; 3 x WARN redis call failed, retrying (commit);
// ...". total is their number. It needs Options.Bench, like OutputLines.
func (d *Deployment) ProblemSummary(prefix string) (summary string, total int) {
	counts := map[string]int{}
	for _, line := range d.OutputLines(prefix, "level=") {
		if m := logMsg.FindStringSubmatch(line); m != nil {
			key := m[1] + " " + strings.Trim(m[2], `"`)
			if op := logOp.FindStringSubmatch(line); op != nil {
				key += " (" + strings.Trim(op[1], `"`) + ")"
			}
			counts[key]++
			total++
		}
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return counts[keys[i]] > counts[keys[j]] || counts[keys[i]] == counts[keys[j]] && keys[i] < keys[j]
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%d x %s", counts[k], k)
	}
	if len(parts) == 0 {
		return "none", 0
	}
	return strings.Join(parts, "; "), total
}

// LogProblems logs ProblemSummary(prefix) and returns the total.
func (d *Deployment) LogProblems(prefix string) int {
	d.TB.Helper()
	summary, n := d.ProblemSummary(prefix)
	d.TB.Logf("%s warnings and errors: %s", prefix, summary)
	return n
}
