package api

// Seed regenerate-token.txt: POST /api/session/regeneratetoken with the
// Login model, answering the new token as a bare string.

import (
	"encoding/xml"
	"strings"

	"github.com/gofiber/fiber/v2"

	"tether"
)

// loginModel is the seed's request. AccessToken holds the expired token;
// the browser, machine, address and platform the client claims go to the
// audit trail.
type loginModel struct {
	Email       string `json:"email" xml:"email"`
	Password    string `json:"password" xml:"password"`
	Persistent  bool   `json:"persistent" xml:"persistent"`
	Redirect    string `json:"redirect" xml:"redirect"`
	AccessToken string `json:"accessToken" xml:"accesstoken"`
	BrowserName string `json:"browserName" xml:"browsername"`
	BrowserID   string `json:"browserID" xml:"browserid"`
	IPAddress   string `json:"ipAddress" xml:"ipaddress"`
	MachineName string `json:"machineName" xml:"machinename"`
	Platform    string `json:"platform" xml:"platform"`
}

// bareString is an answer that is one string: "…" in JSON, <string> in the
// .NET serialization namespace in XML, one cell in CSV and XLSX.
type bareString string

func (v bareString) MarshalXML(e *xml.Encoder, _ xml.StartElement) error {
	return e.Encode(struct {
		XMLName xml.Name `xml:"string"`
		Xmlns   string   `xml:"xmlns,attr"`
		Value   string   `xml:",chardata"`
	}{Xmlns: "http://schemas.microsoft.com/2003/10/Serialization/", Value: string(v)})
}

var errEmailMismatch = tether.NewError(tether.CodeTokenInvalid, "the email does not belong to the token's user")

// regenerateToken renews the access token in AccessToken under every
// renewal rule; the session must still be in use (not past its idle limit).
// The handset, if the token is bound to one, is named by X-Device-Id. An
// email, when given, must be the token's user's username or email.
func (s *server) regenerateToken(c *fiber.Ctx) error {
	var req loginModel
	if err := decodeLoose(c, &req, bodyKinds{xml: true, form: true}); err != nil {
		return err
	}
	client := map[string]string{}
	for k, v := range map[string]string{
		"browserName": req.BrowserName, "browserId": req.BrowserID, "ipAddress": req.IPAddress,
		"machineName": req.MachineName, "platform": req.Platform,
	} {
		if v = strings.TrimSpace(v); v != "" {
			client[k] = v
		}
	}
	ctx := c.UserContext()
	if len(client) > 0 {
		o := tether.OriginOf(ctx)
		o.Client = client
		ctx = tether.WithOrigin(ctx, o)
	}
	token := strings.TrimSpace(req.AccessToken)
	if email := strings.TrimSpace(req.Email); email != "" {
		u, err := s.Auth.TokenUser(ctx, token)
		if err != nil {
			return err
		}
		if !strings.EqualFold(email, u.Username) && !strings.EqualFold(email, u.Email) {
			return errEmailMismatch
		}
	}
	g, err := s.Auth.Renew(ctx, token, deviceHeader(c))
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return s.respond(c, fiber.StatusOK, bareString(g.AccessToken), xmlNames("string", "item"))
}
