package domain_test

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/domain"
)

var phoneHintPattern = regexp.MustCompile(`^\*\*\*[0-9]{3}$`)

// TestMaskPhone_Valid: a valid number becomes "***" and its last three
// digits; nothing else of it is kept (R11).
func TestMaskPhone_Valid(t *testing.T) {
	cases := []struct {
		phone string
		want  string
	}{
		{"07700900123", "***123"},
		{"+447700900123", "***123"},
		{"+44 7700 900123", "***123"},
		{"+44 (0) 7700 900 456", "***456"},
		{"(01603) 223-789", "***789"},
		{"01603-223-000", "***000"},
		{"01603.223.001", "***001"},
		{"+1 (555) 010-0199", "***199"},
		{"1234567", "***567"},                        // 7 digits, the fewest
		{"123456789012345", "***345"},                // 15 digits, the most
		{"+123 456 789 012 345", "***345"},           // 15 digits with separators
		{"  07700900123  ", "***123"},                // spaces around
		{"0-7-7-0-0-9-0-0-1-2-3", "***123"},          // any separators between digits
		{"+(44)-7700.900 123", "***123"},             // mixed separators
		{"1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 ", "***345"}, // 30 bytes
	}
	for _, c := range cases {
		t.Run(c.phone, func(t *testing.T) {
			got, err := domain.MaskPhone(c.phone)
			require.NoError(t, err)
			require.Equal(t, c.want, got)
			require.Regexp(t, phoneHintPattern, got)

			// The hint is exactly what a PhoneEnrolled event accepts.
			_, err = domain.Encode(&domain.PhoneEnrolled{AccountID: exAccount, PhoneHint: got, EnrolledAt: exAt})
			require.NoError(t, err)
		})
	}
}

func TestMaskPhone_Invalid(t *testing.T) {
	cases := []struct {
		name  string
		phone string
	}{
		{"empty", ""},
		{"only a plus", "+"},
		{"only separators", " ( ) - . "},
		{"6 digits", "123456"},
		{"6 digits with separators", "+12 34-56"},
		{"16 digits", "1234567890123456"},
		{"16 digits with plus", "+1234567890123456"},
		{"longer than 32 bytes", strings.Repeat(" ", 30) + "07700900123"},
		{"33 bytes of separators and 7 digits", "1 - 2 - 3 - 4 - 5 - 6 - 7 -------"},
		{"letter O for zero", "0770O900123"},
		{"letters", "call me maybe"},
		{"tel URI", "tel:+447700900123"},
		{"extension", "07700 900123 ext 5"},
		{"inner plus", "44+7700900123"},
		{"two leading plus", "++447700900123"},
		{"trailing plus", "07700900123+"},
		{"plus after a space", " +447700900123"},
		{"slash", "07700/900123"},
		{"tab", "07700\t900123"},
		{"newline", "07700900123\n"},
		{"hash", "#07700900123"},
		{"star", "*07700900123"},
		{"comma", "07700,900123"},
		{"arabic-indic digits", "٠٧٧٠٠٩٠٠١٢٣"},
		{"fullwidth digits", "０７７００９００１２３"},
		{"devanagari digits", "०७७००९००१२३"},
		{"digits and a fullwidth digit", "0770090012３"},
		{"non-breaking space", "07700\u00a0900123"},
		{"NUL", "07700\x00900123"},
		{"invalid UTF-8", "07700\xff900123"},
		{"two numbers", "07700900123;07700900124"},
		{"already masked", "***123"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := domain.MaskPhone(c.phone)
			require.ErrorIs(t, err, domain.ErrInvalid)
			require.Equal(t, domain.KindInvalid, domain.KindOf(err))
			var fe *domain.FieldError
			require.True(t, errors.As(err, &fe))
			require.Equal(t, "phone", fe.Field)
			require.Empty(t, got)
			require.NotContains(t, err.Error(), "900123", "the error does not repeat the number")
		})
	}
}

// FuzzMaskPhone: MaskPhone never panics; what it accepts becomes a valid
// hint made of the input's last three digits.
func FuzzMaskPhone(f *testing.F) {
	for _, s := range []string{"", "07700900123", "+44 (0) 7700 900 456", "123456", "1234567890123456", "٠٧٧٠٠٩٠٠١٢٣", "44+7700900123"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, phone string) {
		got, err := domain.MaskPhone(phone)
		if err != nil {
			require.ErrorIs(t, err, domain.ErrInvalid)
			require.Empty(t, got)
			return
		}
		require.Regexp(t, phoneHintPattern, got)
		var digits []byte
		for i := 0; i < len(phone); i++ {
			if phone[i] >= '0' && phone[i] <= '9' {
				digits = append(digits, phone[i])
			}
		}
		require.GreaterOrEqual(t, len(digits), 7)
		require.LessOrEqual(t, len(digits), 15)
		require.Equal(t, "***"+string(digits[len(digits)-3:]), got)
		require.LessOrEqual(t, len(phone), 32)
	})
}

// inviteEmail sends an invitation of email through the exported API: the
// account aggregate of the address, invited by a worker.
func inviteEmail(email string) ([]domain.Event, error) {
	a := domain.NewAccount(domain.AccountIDForEmail(email))
	by := domain.Actor{ID: "worker-ann", Role: domain.RoleWorker}
	return a.Invite(by, email, string(domain.KindParent), exAt, domain.DefaultPolicy)
}

func TestEmail_ValidAddresses(t *testing.T) {
	local254 := strings.Repeat("a", 254-len("@example.org")) + "@example.org"
	cases := []struct {
		email      string
		normalized string
	}{
		{"ann@example.org", "ann@example.org"},
		{"Ann.Smith+portal@Example.ORG", "ann.smith+portal@example.org"},
		{"a@b.co", "a@b.co"},
		{"o'brien@council.gov.uk", "o'brien@council.gov.uk"},
		{"first_last-1@sub.example.co.uk", "first_last-1@sub.example.co.uk"},
		{"josé@example.org", "josé@example.org"},
		{"ANN@EXAMPLE.ORG", "ann@example.org"},
		{local254, local254}, // 254 bytes, the most
	}
	for _, c := range cases {
		t.Run(c.email[:min(len(c.email), 40)], func(t *testing.T) {
			events, err := inviteEmail(c.email)
			require.NoError(t, err)
			require.Len(t, events, 1)
			inv, ok := events[0].(*domain.AccountInvited)
			require.True(t, ok)
			require.Equal(t, c.normalized, inv.Email, "the invitation keeps the normalized address")
			require.Equal(t, domain.AccountIDForEmail(c.email), inv.AccountID)

			// And it survives the log.
			b, err := domain.Encode(inv)
			require.NoError(t, err)
			back, err := domain.Decode(domain.TypeAccountInvited, b)
			require.NoError(t, err)
			require.Equal(t, inv, back)
		})
	}
}

func TestEmail_InvalidAddresses(t *testing.T) {
	cases := []struct {
		name  string
		email string
	}{
		{"empty", ""},
		{"blank", "   "},
		{"no at", "ann.example.org"},
		{"no local part", "@example.org"},
		{"no domain", "ann@"},
		{"two ats", "ann@@example.org"},
		{"at in the domain", "ann@ex@ample.org"},
		{"domain without a dot", "ann@localhost"},
		{"domain starts with a dot", "ann@.example.org"},
		{"domain ends with a dot", "ann@example.org."},
		{"two dots in the domain", "ann@example..org"},
		{"leading space", " ann@example.org"},
		{"trailing space", "ann@example.org "},
		{"inner space", "ann smith@example.org"},
		{"tab", "ann@example.org\t"},
		{"newline", "ann@example.org\n"},
		{"display name", "Ann <ann@example.org>"},
		{"angle brackets", "<ann@example.org>"},
		{"two addresses, comma", "ann@example.org,bob@example.org"},
		{"two addresses, semicolon", "ann@example.org;bob@example.org"},
		{"quoted local part", `"ann"@example.org`},
		{"address literal", "ann@[192.0.2.1]"},
		{"backslash", `ann\@example.org`},
		{"colon", "mailto:ann@example.org"},
		{"brackets", "ann(work)@example.org"},
		{"NUL", "ann\x00@example.org"},
		{"control character", "ann\x07@example.org"},
		{"invalid UTF-8", "ann\xff@example.org"},
		{"255 bytes", strings.Repeat("a", 255-len("@example.org")) + "@example.org"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			events, err := inviteEmail(c.email)
			require.ErrorIs(t, err, domain.ErrInvalid, "%q", c.email)
			require.Equal(t, domain.KindInvalid, domain.KindOf(err))
			var fe *domain.FieldError
			require.True(t, errors.As(err, &fe))
			require.Equal(t, "email", fe.Field)
			require.Empty(t, events)

			// The same address cannot enter the log through an event either.
			_, err = domain.Encode(&domain.AccountInvited{
				AccountID: domain.AccountIDForEmail(c.email), Email: c.email, Kind: domain.KindParent,
				InvitedAt: exAt, ExpiresAt: exAt.Add(time.Hour),
			})
			require.ErrorIs(t, err, domain.ErrMalformedEvent)

			// Nor through an activation report.
			acct := domain.NewAccount(exAccount)
			svc := domain.Actor{ID: "portal-backend", Role: domain.RoleService}
			_, err = acct.Activate(svc, "idp|someone", c.email, exAt)
			require.ErrorIs(t, err, domain.ErrInvalid)
		})
	}
}
