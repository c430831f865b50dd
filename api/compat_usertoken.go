package api

// Seed get-user-token.txt: POST /api/User/GetUserToken.

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"strings"

	"github.com/gofiber/fiber/v2"

	"tether"
	"tether/auth"
	"tether/device"
)

// userCredentialModel is the seed's request, in JSON (camelCase) or XML
// (PascalCase, read lower-cased). RapidlotVersion is the app's version.
type userCredentialModel struct {
	DeviceInfo *struct {
		Manufacturer string `json:"manufacturer" xml:"manufacturer"`
		Model        string `json:"model" xml:"model"`
	} `json:"deviceInfo" xml:"deviceinfo"`
	HasIccCard *bool    `json:"hasIccCard" xml:"hasicccard"`
	IccIDs     []string `json:"iccIds" xml:"iccids>string"`
	IMEI       string   `json:"imei" xml:"imei"`
	OSVersion  *struct {
		API  int    `json:"api" xml:"api"`
		Name string `json:"name" xml:"name"`
	} `json:"osVersion" xml:"osversion"`
	RapidlotVersion *string `json:"rapidlotVersion" xml:"rapidlotversion"`
	UserName        string  `json:"userName" xml:"username"`
	Password        string  `json:"password" xml:"password"`
}

// payload returns the device part as the native payload, or nil when the
// request carries no handset at all.
func (m userCredentialModel) payload() *device.Payload {
	if m.IMEI == "" && m.DeviceInfo == nil && m.OSVersion == nil && m.HasIccCard == nil && len(m.IccIDs) == 0 && m.RapidlotVersion == nil {
		return nil
	}
	p := &device.Payload{IMEI: m.IMEI, HasIccCard: m.HasIccCard, IccIDs: m.IccIDs, AppVersion: m.RapidlotVersion}
	if m.DeviceInfo != nil {
		p.DeviceInfo = &device.Info{Manufacturer: m.DeviceInfo.Manufacturer, Model: m.DeviceInfo.Model}
	}
	if m.OSVersion != nil {
		p.OSVersion = &device.OSVersion{API: m.OSVersion.API, Name: m.OSVersion.Name}
	}
	return p
}

// userTokenModel is the seed's answer.
type userTokenModel struct {
	XMLName              xml.Name      `json:"-" xml:"UserTokenModel"`
	Token                string        `json:"token" xml:"Token"`
	Expire               *string       `json:"expire" xml:"Expire,omitempty"`
	IsSyncGatewayEnabled bool          `json:"isSyncGatewayEnabled" xml:"IsSyncGatewayEnabled"`
	Message              string        `json:"message" xml:"Message"`
	UserChannel          *string       `json:"userChannel" xml:"UserChannel,omitempty"`
	UserDetailsAsw       *cacheUserAsw `json:"userDetailsAsw" xml:"UserDetailsAsw,omitempty"`
}

// cacheUserAsw is the user part of the answer. The dealer and franchise
// lists, cas, cw and id come from the user's profile object when it has
// them.
type cacheUserAsw struct {
	Deleted       bool              `json:"deleted" xml:"Deleted"`
	DealerList    []json.RawMessage `json:"dealerList" xml:"-"`
	EmailID       string            `json:"emailId" xml:"EmailId"`
	FirstName     string            `json:"firstName" xml:"FirstName"`
	FranchiseList []json.RawMessage `json:"franchiseList" xml:"-"`
	LastName      string            `json:"lastName" xml:"LastName"`
	UserKey       uint64            `json:"userKey" xml:"UserKey"`
	Cas           json.RawMessage   `json:"cas" xml:"-"`
	Cw            string            `json:"cw" xml:"Cw"`
	ID            string            `json:"id" xml:"Id"`
}

func newCacheUserAsw(g auth.Grant) *cacheUserAsw {
	u := g.User
	v := &cacheUserAsw{
		Deleted: u.Disabled, DealerList: profileList(u.Profile, "dealerList"), EmailID: u.Email,
		FirstName: u.FirstName, FranchiseList: profileList(u.Profile, "franchiseList"), LastName: u.LastName,
		UserKey: u.Key, Cas: json.RawMessage("0"), Cw: dotnetTime(u.UpdatedAt), ID: u.ID,
	}
	if raw := profileField(u.Profile, "cas"); raw != nil {
		v.Cas = raw
	}
	var s string
	if raw := profileField(u.Profile, "cw"); raw != nil && json.Unmarshal(raw, &s) == nil {
		v.Cw = s
	}
	if raw := profileField(u.Profile, "id"); raw != nil && json.Unmarshal(raw, &s) == nil {
		v.ID = s
	}
	return v
}

func (s *server) getUserToken(c *fiber.Ctx) error {
	fail := func(status int, msg string) error {
		return s.respond(c, status, userTokenModel{Message: msg})
	}
	var req userCredentialModel
	if err := decodeLoose(c, &req, bodyKinds{xml: true}); err != nil {
		p := toProblem(err)
		return fail(p.Status, p.Detail)
	}
	// The seed's own order: blank credentials are a 401.
	if strings.TrimSpace(req.UserName) == "" || req.Password == "" {
		return fail(fiber.StatusUnauthorized, "user name and password are required")
	}
	g, err := s.Auth.Login(c.UserContext(), auth.LoginRequest{
		Username: req.UserName, Password: req.Password, Device: req.payload(), Persistent: true,
	})
	if err != nil {
		return fail(s.userTokenStatus(c, err))
	}
	exp := dotnetTime(g.AccessExpiresAt)
	out := userTokenModel{Token: g.AccessToken, Expire: &exp, UserDetailsAsw: newCacheUserAsw(g)}
	if raw := profileField(g.User.Profile, "isSyncGatewayEnabled"); raw != nil {
		if json.Unmarshal(raw, &out.IsSyncGatewayEnabled) != nil {
			out.IsSyncGatewayEnabled = false
		}
	}
	var channel string
	if raw := profileField(g.User.Profile, "userChannel"); raw != nil && json.Unmarshal(raw, &channel) == nil {
		out.UserChannel = &channel
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return s.respond(c, fiber.StatusOK, out)
}

// userTokenStatus maps a refused login to the seed's statuses: 500 when no
// token could be made, 400 for everything the client got wrong (wrong
// credentials, a bad payload, a handset that may not log in), with a
// message naming what.
func (s *server) userTokenStatus(c *fiber.Ctx, err error) (int, string) {
	p := toProblem(err)
	if p.Status >= 500 {
		s.log.ErrorContext(c.UserContext(), "GetUserToken failed", "error", err)
		return fiber.StatusInternalServerError, "the token could not be made"
	}
	var verr *tether.ValidationError
	if errors.As(err, &verr) {
		parts := make([]string, len(verr.Fields))
		for i, f := range verr.Fields {
			parts[i] = f.Field + ": " + f.Message + " (" + f.Code + ")"
		}
		return fiber.StatusBadRequest, "invalid fields: " + strings.Join(parts, "; ")
	}
	if p.retryAfter > 0 {
		c.Set(fiber.HeaderRetryAfter, retryAfter(p.retryAfter))
	}
	return fiber.StatusBadRequest, p.Detail
}
