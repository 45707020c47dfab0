package credentials

import (
	"crypto/rand"
	"fmt"

	"github.com/google/uuid"

	"github.com/vpnfleet/vpnfleet/shared/user"
)

func init() {
	generators[user.VLESSReality] = func(creds *user.Credentials, _ Options) error {
		id, err := uuid.NewRandomFromReader(rand.Reader)
		if err != nil {
			return fmt.Errorf("generating vless uuid: %w", err)
		}
		creds.VLESS = &user.VLESS{UUID: id.String(), Flow: user.FlowVision}
		return nil
	}
}
