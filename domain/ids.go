package domain

import (
	"crypto/hmac"
	"crypto/sha256"
	"fmt"

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

// IdentityStream is the stream that links identity subject to one account
// in this deployment.
func (k *KeyedIDs) IdentityStream(subject string) string {
	return IdentityStreamPrefix + k.derive("identity", subject).String()
}
