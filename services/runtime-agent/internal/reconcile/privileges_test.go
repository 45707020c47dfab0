package reconcile

import (
	"errors"
	"testing"

	"github.com/vpnfleet/vpnfleet/shared/errs"
)

func TestNewRefusesBadXrayUser(t *testing.T) {
	for _, user := range []string{"nobody", "65532", "-1:0", "65532:4294967296"} {
		t.Run(user, func(t *testing.T) {
			_, err := New(Config{Node: "n1", PublicHost: "127.0.0.1", DataDir: t.TempDir(), XrayUser: user}, nil, nil, nil)
			if !errors.Is(err, errs.Invalid) {
				t.Fatalf("New with xray user %q: %v, want Invalid", user, err)
			}
			fe := errs.FieldsOf(err)
			if len(fe) != 1 || fe[0].Field != "xray_user" {
				t.Errorf("fields %v, want one naming xray_user", fe)
			}
		})
	}
}
