// Package consistency holds the property tests that tie the read models to
// the domain: for random histories, the in-memory access index, the access
// history table and a from-scratch replay of the domain aggregates give the
// same answers at every time, also "as known at" earlier positions. It has
// no code of its own.
package consistency
