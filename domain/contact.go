package domain

import "strings"

// checkEmail accepts a plausible single address: local@domain.tld, no spaces
// or control characters, at most 254 bytes. The identity provider is the
// authority on addresses; this only keeps rubbish out of the log.
func checkEmail(email string) error {
	if err := checkIdentifier("email", email, 254); err != nil {
		return err
	}
	if email != strings.TrimSpace(email) || strings.ContainsAny(email, " \t\n<>(),;:\"[]\\") {
		return invalid("email", "not a plain address")
	}
	local, host, ok := strings.Cut(email, "@")
	if !ok || local == "" || host == "" || strings.Contains(host, "@") {
		return invalid("email", "must be local@domain")
	}
	if !strings.Contains(host, ".") || strings.HasPrefix(host, ".") || strings.HasSuffix(host, ".") || strings.Contains(host, "..") {
		return invalid("email", "domain must have a dot")
	}
	return nil
}

// MaskPhone validates a phone number (7 to 15 digits, optionally with a
// leading "+" and spaces, dots, hyphens or brackets between them) and returns
// its masked hint: "***" and the last three digits. The full number goes no
// further (R11).
func MaskPhone(phone string) (string, error) {
	if len(phone) > 32 {
		return "", invalid("phone", "too long")
	}
	digits := make([]byte, 0, 16)
	for i := 0; i < len(phone); i++ {
		c := phone[i]
		switch {
		case c >= '0' && c <= '9':
			digits = append(digits, c)
		case c == '+' && i == 0:
		case c == ' ' || c == '-' || c == '.' || c == '(' || c == ')':
		default:
			return "", invalid("phone", "only digits, an optional leading +, spaces, dots, hyphens and brackets")
		}
	}
	if len(digits) < 7 || len(digits) > 15 {
		return "", invalid("phone", "must have 7 to 15 digits")
	}
	return "***" + string(digits[len(digits)-3:]), nil
}

func isPhoneHint(h string) bool {
	if len(h) != 6 || h[:3] != "***" {
		return false
	}
	for i := 3; i < 6; i++ {
		if h[i] < '0' || h[i] > '9' {
			return false
		}
	}
	return true
}
