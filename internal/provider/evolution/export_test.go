package evolution

// NormalizeEvent exposes normalizeEvent to the tests of package evolution_test.
var NormalizeEvent = normalizeEvent
