// Package e2e tests lull from the outside: it builds the api and worker
// binaries, runs them against the real Redis and RabbitMQ in a namespace of
// its own, posts webhooks and checks what an HTTP receiver gets against the
// guarantees listed in the README's "Guarantees" section. The tools for
// that are in package e2e/harness; the tests are here.
//
//	go test -race -count=1 ./e2e/
//	go test -run '^$' -bench . -benchtime 3000x ./e2e/
//	go test -race -tags faults -count=1 -run Faults ./e2e/   # the fault suite; see task e2e:faults
package e2e
