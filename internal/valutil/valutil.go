// Package valutil holds the one helper that gives an option its default
// (after river's valutil): a component's Options say "zero means the
// default", and the default is written once, as a constant of the package
// that owns the setting.
package valutil

// ValOrDefault returns val, or def when val is the zero value.
func ValOrDefault[T comparable](val, def T) T {
	var zero T
	if val == zero {
		return def
	}
	return val
}
