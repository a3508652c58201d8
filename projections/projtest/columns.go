package projtest

import (
	"reflect"
	"strings"
)

// BunColumns returns the column names of the bun model struct v (a struct
// or a pointer to one), in field order, from the first part of each field's
// bun tag; the embedded bun.BaseModel and fields tagged "-" are skipped.
// Tests use it to check that a projection's InsertRows column list and its
// values follow the model that queries scan into.
func BunColumns(v any) []string {
	t := reflect.TypeOf(v)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous && f.Type.Name() == "BaseModel" {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("bun"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		out = append(out, name)
	}
	return out
}
