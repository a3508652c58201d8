package snapshotfile

import (
	"bytes"
	"encoding"
	"encoding/gob"
	"errors"
	"fmt"
	"reflect"
	"sync"
)

// Payloads in parts (EncodeGobParts, DecodeGobParts).
//
// encoding/gob reads a message of more than 10 MB in 10 MB pieces
// appended to a growing buffer, so a large value written as one message
// is copied, and its memory touched, several times over at decoding: 46 %
// of a county start from snapshots went to it (docs/performance.md). In
// parts, a value is written as many messages, none holding a long slice
// whole: a struct (unless it encodes itself, as time.Time does) field by
// field, and a slice as its length and then runs of partLen elements,
// down to partDepth levels; every other value as one message. Each
// message holds one value in a struct of one field (wrapped), so that
// zero values and nil pointers encode as gob encodes them in a field.
const (
	partLen   = 2048
	partDepth = 4
)

var errParts = errors.New("decode: parts do not match the type")

// EncodeGobParts returns the bytes of a file whose payload is v in
// encoding/gob, in parts (see above). v is a struct or a pointer to one.
// DecodeGobParts reads it back into a value of the same type.
func (f Format) EncodeGobParts(v any) ([]byte, error) {
	return f.encodeGob(func(enc *gob.Encoder) error { return encodeParts(enc, reflect.Indirect(reflect.ValueOf(v)), 0) })
}

// DecodeGobParts checks data (Decode) and decodes its payload, written by
// EncodeGobParts, into v, a non-nil pointer. It never panics: every
// failure wraps f.Corrupt or f.OtherVersion.
func (f Format) DecodeGobParts(data []byte, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("snapshotfile: DecodeGobParts needs a non-nil pointer, not %T", v)
	}
	return f.decodeGob(data, func(dec *gob.Decoder, r *bytes.Reader, n int) error {
		if err := decodeParts(dec, rv.Elem(), 0, n); err != nil {
			return err
		}
		if r.Len() != 0 {
			return fmt.Errorf("%w: %d bytes after the payload", errParts, r.Len())
		}
		return nil
	})
}

var (
	gobEncoderType    = reflect.TypeFor[gob.GobEncoder]()
	binaryMarshalType = reflect.TypeFor[encoding.BinaryMarshaler]()
	wrappers          sync.Map // reflect.Type → the struct{ V T } type
)

// split reports whether values of t are written in parts at depth: a
// struct that does not encode itself, or a slice (not of bytes' kind
// alone: a []byte is split too, it is the largest kind there is).
func split(t reflect.Type, depth int) bool {
	if depth >= partDepth {
		return false
	}
	switch t.Kind() {
	case reflect.Struct:
		return !t.Implements(gobEncoderType) && !reflect.PointerTo(t).Implements(gobEncoderType) &&
			!t.Implements(binaryMarshalType) && !reflect.PointerTo(t).Implements(binaryMarshalType)
	case reflect.Slice:
		return true
	}
	return false
}

// wrapper is struct{ V T }.
func wrapper(t reflect.Type) reflect.Type {
	if w, ok := wrappers.Load(t); ok {
		return w.(reflect.Type)
	}
	w := reflect.StructOf([]reflect.StructField{{Name: "V", Type: t}})
	wrappers.Store(t, w)
	return w
}

func encodeParts(enc *gob.Encoder, v reflect.Value, depth int) error {
	t := v.Type()
	if !split(t, depth) {
		w := reflect.New(wrapper(t)).Elem()
		w.Field(0).Set(v)
		return enc.EncodeValue(w)
	}
	if t.Kind() == reflect.Struct {
		for i := range t.NumField() {
			if !t.Field(i).IsExported() {
				continue // gob leaves them out too
			}
			if err := encodeParts(enc, v.Field(i), depth+1); err != nil {
				return fmt.Errorf("%s: %w", t.Field(i).Name, err)
			}
		}
		return nil
	}
	n := v.Len()
	if err := encodeParts(enc, reflect.ValueOf(uint64(n)), partDepth); err != nil {
		return err
	}
	for i := 0; i < n; i += partLen {
		if err := encodeParts(enc, v.Slice(i, min(i+partLen, n)), partDepth); err != nil {
			return err
		}
	}
	return nil
}

// decodeParts decodes into v (settable) what encodeParts wrote for its
// type; limit bounds a slice's length (the payload's size: every element
// takes a byte at least, but for zero-size ones, which no snapshot holds).
func decodeParts(dec *gob.Decoder, v reflect.Value, depth, limit int) error {
	t := v.Type()
	if !split(t, depth) {
		w := reflect.New(wrapper(t))
		if err := dec.DecodeValue(w); err != nil {
			return err
		}
		v.Set(w.Elem().Field(0))
		return nil
	}
	if t.Kind() == reflect.Struct {
		for i := range t.NumField() {
			if !t.Field(i).IsExported() {
				continue
			}
			if err := decodeParts(dec, v.Field(i), depth+1, limit); err != nil {
				return fmt.Errorf("%s: %w", t.Field(i).Name, err)
			}
		}
		return nil
	}
	var n uint64
	if err := decodeParts(dec, reflect.ValueOf(&n).Elem(), partDepth, limit); err != nil {
		return err
	}
	if n == 0 {
		v.SetZero() // as gob decodes an empty slice
		return nil
	}
	if n > uint64(limit) {
		return fmt.Errorf("%w: a slice of %d elements in %d bytes", errParts, n, limit)
	}
	out := reflect.MakeSlice(t, 0, int(n))
	part := reflect.New(t).Elem()
	for out.Len() < int(n) {
		part.SetZero()
		if err := decodeParts(dec, part, partDepth, limit); err != nil {
			return err
		}
		if part.Len() == 0 || out.Len()+part.Len() > int(n) {
			return fmt.Errorf("%w: a part of %d elements where %d are left", errParts, part.Len(), int(n)-out.Len())
		}
		out = reflect.AppendSlice(out, part)
	}
	v.Set(out)
	return nil
}
