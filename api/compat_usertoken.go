package api

// Seed get-user-token.txt: POST /api/User/GetUserToken.

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"

	"tether"
	"tether/auth"
	"tether/device"
)

// userCredentialModel is the seed's request, in JSON (camelCase) or XML
// (PascalCase, read lower-cased). RapidlotVersion is the app's version
// (its Android versionName, any text). Every field is optional.
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

// userTokenModel is the seed's answer. Its XML (the seed shows none) is its
// JSON's members in PascalCase: see MarshalXML.
type userTokenModel struct {
	Token                string        `json:"token"`
	Expire               *string       `json:"expire"`
	IsSyncGatewayEnabled bool          `json:"isSyncGatewayEnabled"`
	Message              string        `json:"message"`
	UserChannel          *string       `json:"userChannel"`
	UserDetailsAsw       *cacheUserAsw `json:"userDetailsAsw"`
}

// cacheUserAsw is the user part of the answer. The dealer and franchise
// lists, cas, cw and id come from the user's profile object when it has
// them.
type cacheUserAsw struct {
	Deleted       bool              `json:"deleted"`
	DealerList    []json.RawMessage `json:"dealerList"`
	EmailID       string            `json:"emailId"`
	FirstName     string            `json:"firstName"`
	FranchiseList []json.RawMessage `json:"franchiseList"`
	LastName      string            `json:"lastName"`
	UserKey       uint64            `json:"userKey"`
	Cas           json.RawMessage   `json:"cas"`
	Cw            string            `json:"cw"`
	ID            string            `json:"id"`
}

// xsiNamespace is the XML Schema instance namespace, of xsi:nil.
const xsiNamespace = "http://www.w3.org/2001/XMLSchema-instance"

// MarshalXML writes the answer as <UserTokenModel> holding every member of
// its JSON form, in the same order, named in PascalCase (userDetailsAsw is
// <UserDetailsAsw>), as the seed's XML request names its members: a null
// is an empty element with xsi:nil="true", a list's items are elements
// named for the list without "List" (<DealerList><Dealer>…), or <Item>,
// and the profile's objects are written the same way.
func (m userTokenModel) MarshalXML(e *xml.Encoder, _ xml.StartElement) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	tree, err := parseTree(data)
	if err != nil {
		return err
	}
	root := xml.StartElement{Name: xml.Name{Local: "UserTokenModel"},
		Attr: []xml.Attr{{Name: xml.Name{Local: "xmlns:xsi"}, Value: xsiNamespace}}}
	return writeDotnetXML(e, root, tree)
}

// writeDotnetXML writes n as the element start: see userTokenModel's
// MarshalXML.
func writeDotnetXML(e *xml.Encoder, start xml.StartElement, n *node) error {
	if n.kind == 'z' {
		start.Attr = append(start.Attr, xml.Attr{Name: xml.Name{Local: "xsi:nil"}, Value: "true"})
	}
	if err := e.EncodeToken(start); err != nil {
		return err
	}
	switch n.kind {
	case 'o':
		for i, k := range n.keys {
			if err := writeDotnetXML(e, xml.StartElement{Name: xml.Name{Local: pascalName(k)}}, n.vals[i]); err != nil {
				return err
			}
		}
	case 'a':
		item := "Item"
		if name, ok := strings.CutSuffix(start.Name.Local, "List"); ok && name != "" {
			item = name
		}
		for _, it := range n.items {
			if err := writeDotnetXML(e, xml.StartElement{Name: xml.Name{Local: item}}, it); err != nil {
				return err
			}
		}
	case 'z':
	default:
		if err := e.EncodeToken(xml.CharData(n.scalar)); err != nil {
			return err
		}
	}
	return e.EncodeToken(start.End())
}

// pascalName is a JSON member name as an XML element name in PascalCase.
func pascalName(s string) string {
	s = xmlName(s)
	r, size := utf8.DecodeRuneInString(s)
	return string(unicode.ToUpper(r)) + s[size:]
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
	// The seed's own order: blank credentials (empty, or only spaces) are
	// a 401.
	if strings.TrimSpace(req.UserName) == "" || strings.TrimSpace(req.Password) == "" {
		return fail(fiber.StatusUnauthorized, "user name and password are required")
	}
	// Every field is optional in the seed: a handset that reported itself
	// before may leave out what has not changed.
	dev := req.payload()
	if dev != nil {
		if err := s.Devices.FillFromRecord(c.UserContext(), dev); err != nil {
			return fail(s.userTokenStatus(c, err))
		}
	}
	g, err := s.Auth.Login(c.UserContext(), auth.LoginRequest{
		Username: req.UserName, Password: req.Password, Device: dev, Persistent: true,
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
	// The answer has no member for what a problem adds (minAppVersion,
	// minOsApi): the message says it.
	msg := p.Detail
	keys := make([]string, 0, len(p.extra))
	for k := range p.extra {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		msg += fmt.Sprintf(" (%s: %v)", k, p.extra[k])
	}
	return fiber.StatusBadRequest, msg
}
