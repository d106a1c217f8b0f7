// Package harness runs lull from the outside, for the e2e tests and for any
// package test that wants the real thing: it builds the api and worker
// binaries once (Main), starts them against the real Redis and RabbitMQ in a
// namespace of their own (Setup), posts webhooks to the api and records what
// it accepted, receives the batches the http sink delivers at a test HTTP
// server (Receiver) that can fail, hold or drop requests on purpose, waits
// for batches, and checks them against the README's guarantees: every
// accepted message delivered exactly once, in order (AssertExactlyOnce).
//
// A test builds on it like this:
//
//	func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }
//
//	func TestSomething(t *testing.T) {
//		d := harness.Setup(t, harness.Options{})
//		d.Send("5511999990001", "hi")
//		d.WaitDelivered(10 * time.Second)
//		harness.AssertExactlyOnce(t, d.SentSoFar(), d.Recv.Accepted())
//	}
//
// Everything a deployment starts is stopped, and everything it created in
// Redis and RabbitMQ deleted, when the test ends.
package harness
