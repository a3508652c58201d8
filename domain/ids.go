package domain

import (
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"strings"

	"github.com/google/uuid"
)

// KeyedIDs derives account ids from emails, and identity streams' names
// from identity subjects, under a key of the deployment (R22): without the
// key nobody can compute an account's id from an email address, or
// confirm an id against a list of addresses, as anyone could with the
// name-based AccountIDForEmail and IdentityStream. One email still has
// exactly one account, and one subject one identity stream (R10).
type KeyedIDs struct{ key []byte }

// MinIDKeyBytes is the shortest key NewKeyedIDs accepts.
const MinIDKeyBytes = 32

// NewKeyedIDs returns the derivation under key.
func NewKeyedIDs(key []byte) (*KeyedIDs, error) {
	if len(key) < MinIDKeyBytes {
		return nil, fmt.Errorf("keyed ids: a key of %d bytes, want at least %d", len(key), MinIDKeyBytes)
	}
	return &KeyedIDs{key: append([]byte(nil), key...)}, nil
}

// derive is a UUID (version 8: custom) of HMAC-SHA256(key, kind NUL value).
func (k *KeyedIDs) derive(kind, value string) uuid.UUID {
	m := hmac.New(sha256.New, k.key)
	m.Write([]byte(kind))
	m.Write([]byte{0})
	m.Write([]byte(value))
	var u uuid.UUID
	copy(u[:], m.Sum(nil))
	u[6] = (u[6] & 0x0f) | 0x80 // version 8
	u[8] = (u[8] & 0x3f) | 0x80 // RFC 9562 variant
	return u
}

// AccountID is the account id of email (normalized) in this deployment.
func (k *KeyedIDs) AccountID(email string) uuid.UUID {
	return k.derive("account", NormalizeEmail(email))
}

// ChildID is the id of the child with reference (normalized) in this
// deployment: one reference, one child (R17), and nobody without the key
// can compute the id from a reference.
func (k *KeyedIDs) ChildID(reference string) uuid.UUID {
	return k.derive("child", NormalizeReference(reference))
}

// NormalizeReference is how references are compared (R17): trimmed, upper
// case ("ncc-2024-00417" and "NCC-2024-00417" are one reference).
func NormalizeReference(reference string) string {
	return strings.ToUpper(strings.TrimSpace(reference))
}

// ChildIDForReference is the name-based id of the child with reference,
// for services built without KeyedIDs (tests): anyone can compute it.
func ChildIDForReference(reference string) uuid.UUID {
	return uuid.NewHash(sha256.New(), childNamespace, []byte(NormalizeReference(reference)), 8)
}

// childNamespace is the namespace of ChildIDForReference.
var childNamespace = uuid.MustParse("5b0d7a52-6f0b-4c63-9e1e-8f3a0b3c2d71")

// AlreadyRegistered is the error of registering what exists already: a
// child whose reference is in use (R17), naming it. It wraps
// ErrAlreadyRegistered (409 already_registered).
type AlreadyRegistered struct {
	ChildID uuid.UUID
}

func (e *AlreadyRegistered) Error() string {
	return fmt.Sprintf("reference already in use by child %s: %s", e.ChildID, ErrChildReferenceInUse.Error())
}

func (e *AlreadyRegistered) Unwrap() error { return ErrChildReferenceInUse }

// IdentityStream is the stream that links identity subject to one account
// in this deployment.
func (k *KeyedIDs) IdentityStream(subject string) string {
	return IdentityStreamPrefix + k.derive("identity", subject).String()
}

// LegacyPlacementID is the id of the placement an older system knew as
// legacyID (R24), in this deployment: one legacy placement, one placement,
// so an import run twice finds its placements. Keyed like the other ids, so
// nobody without the key can match ids against a legacy system's.
func (k *KeyedIDs) LegacyPlacementID(legacyID string) uuid.UUID {
	return k.derive("legacy placement", strings.TrimSpace(legacyID))
}

// ImportEventID is the id of the i-th event an import (R24) appends to
// stream for the record with key: the same record imported again gets the
// same ids, so a retried append is recognised by the store.
func (k *KeyedIDs) ImportEventID(stream, key string, i int) uuid.UUID {
	return k.derive("import event", fmt.Sprintf("%s\x00%s\x00%d", stream, key, i))
}
