package api

// Seed auth-login-session.txt: POST /Auth/Login with HTTP Basic credentials,
// answering UserSessionDTO in JSON, text/json, XML and compressed JSON.

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/xml"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"tether"
	"tether/auth"
)

// expiresSoonWithin is how close to expiry a session token says ExpiresSoon.
const expiresSoonWithin = 5 * time.Minute

// userSession is the seed's UserSessionDTO. Its JSON follows the seed's
// sample; its XML is the seed's DataContract form (MarshalXML).
type userSession struct {
	SessionID      uint64     `json:"sessionID"`
	UserID         uint64     `json:"userID"`
	UserHash       string     `json:"userHash"`
	UserToken      string     `json:"userToken"`
	RefreshToken   string     `json:"refreshToken"`
	ExpiryDateUtc  string     `json:"expiryDateUtc"`
	AppData        []property `json:"appData"`
	Props          []property `json:"props"`
	RecordState    int        `json:"recordState"`
	Created        auditData  `json:"created"`
	LastUpdated    auditData  `json:"lastUpdated"`
	Expired        bool       `json:"expired"`
	ExpiresSoon    bool       `json:"expiresSoon"`
	UserName       string     `json:"userName"`
	IsAuthorized   bool       `json:"isAuthorized"`
	Features       []string   `json:"features"`
	Summary        string     `json:"summary"`
	IsSingleSignOn bool       `json:"isSingleSignOn"`
}

// property is one name and value of AppData and Props ({"n": name, "v":
// value}; a null value is left out, as in the seed).
type property struct {
	N string  `json:"n"`
	V *string `json:"v,omitempty"`
}

// auditData says when and by whom a record was made or changed.
type auditData struct {
	DateUtc  string `json:"dateUtc"`
	UserName string `json:"userName"`
	Summary  string `json:"summary"`
}

// recordStateActive is RecordState.Active: 1 in JSON, "Active" in XML.
const recordStateActive = 1

func newAuditData(t time.Time, user string) auditData {
	return auditData{
		DateUtc:  dotnetTime(t),
		UserName: user,
		// The .NET summary: "alice on 5/20/2024 4:23:26 AMZ".
		Summary: user + " on " + t.UTC().Format("1/2/2006 3:04:05 PM") + "Z",
	}
}

func newUserSession(g auth.Grant, now time.Time) userSession {
	u := g.User
	hash := sha256.Sum256([]byte("tether user hash\x00" + u.ID))
	features := u.Features
	if features == nil {
		features = []string{}
	}
	// The seed's properties name what a client may keep, with null values
	// (the values are in refreshToken and userName).
	props := []property{{N: "RefreshToken"}, {N: "UserName"}}
	return userSession{
		SessionID: g.Session.Key, UserID: u.Key,
		UserHash:  base64.RawURLEncoding.EncodeToString(hash[:]),
		UserToken: g.AccessToken, RefreshToken: g.RefreshToken,
		ExpiryDateUtc: dotnetTime(g.AccessExpiresAt),
		AppData:       props, Props: props,
		RecordState: recordStateActive,
		Created:     newAuditData(g.Session.CreatedAt, u.Username),
		LastUpdated: newAuditData(g.Session.LastUsedAt, u.Username),
		Expired:     !now.Before(g.AccessExpiresAt),
		ExpiresSoon: g.AccessExpiresAt.Sub(now) < expiresSoonWithin,
		UserName:    u.Username, IsAuthorized: true, Features: features,
		Summary:        u.Username + " (" + strings.TrimSpace(u.FirstName+" "+u.LastName) + "), session " + strconv.FormatUint(g.Session.Key, 10),
		IsSingleSignOn: false,
	}
}

// The DataContract namespaces of the seed's XML sample: clients that read
// this XML with a DataContract serializer match elements by them.
const (
	nsInstance    = "http://www.w3.org/2001/XMLSchema-instance"
	nsSession     = "http://schemas.datacontract.org/2004/07/AlayaCare.Residential.AuthClient.Abstractions"
	nsCollections = "http://schemas.datacontract.org/2004/07/AlayaCare.Residential.Common.Collections"
	nsModels      = "http://schemas.datacontract.org/2004/07/AlayaCare.Residential.Common.Models"
	nsArrays      = "http://schemas.microsoft.com/2003/10/Serialization/Arrays"
)

// MarshalXML writes the seed's XML: members in DataContract (alphabetical)
// order, the collections and audit data in their own namespaces under the
// d2p1 prefix, RecordState by name, SessionData nil.
func (v userSession) MarshalXML(e *xml.Encoder, start xml.StartElement) error {
	var b bytes.Buffer
	text := func(s string) string {
		var t bytes.Buffer
		xml.EscapeText(&t, []byte(s))
		return t.String()
	}
	el := func(name, value string) { b.WriteString("<" + name + ">" + text(value) + "</" + name + ">") }
	props := func(name string, ps []property) {
		b.WriteString(`<` + name + ` xmlns:d2p1="` + nsCollections + `">`)
		for _, p := range ps {
			b.WriteString("<d2p1:Property><d2p1:Name>" + text(p.N) + "</d2p1:Name>")
			if p.V == nil {
				b.WriteString(`<d2p1:Value i:nil="true" /><d2p1:ValueForXML i:nil="true" />`)
			} else {
				b.WriteString("<d2p1:Value>" + text(*p.V) + "</d2p1:Value><d2p1:ValueForXML>" + text(*p.V) + "</d2p1:ValueForXML>")
			}
			b.WriteString("</d2p1:Property>")
		}
		b.WriteString("</" + name + ">")
	}
	audit := func(name string, a auditData) {
		b.WriteString(`<` + name + ` xmlns:d2p1="` + nsModels + `"><d2p1:DateUtc>` + text(a.DateUtc) +
			`</d2p1:DateUtc><d2p1:UserName>` + text(a.UserName) + `</d2p1:UserName></` + name + `>`)
	}
	props("AppData", v.AppData)
	audit("Created", v.Created)
	el("ExpiryDateUtc", v.ExpiryDateUtc)
	b.WriteString(`<Features xmlns:d2p1="` + nsArrays + `">`)
	for _, f := range v.Features {
		b.WriteString("<d2p1:string>" + text(f) + "</d2p1:string>")
	}
	b.WriteString("</Features>")
	audit("LastUpdated", v.LastUpdated)
	props("Props", v.Props)
	el("RecordState", "Active")
	b.WriteString(`<SessionData xmlns:d2p1="` + nsCollections + `" i:nil="true" />`)
	el("SessionID", strconv.FormatUint(v.SessionID, 10))
	el("UserHash", v.UserHash)
	el("UserID", strconv.FormatUint(v.UserID, 10))
	el("UserToken", v.UserToken)
	return e.Encode(struct {
		XMLName xml.Name `xml:"UserSessionDTO"`
		XmlnsI  string   `xml:"xmlns:i,attr"`
		Xmlns   string   `xml:"xmlns,attr"`
		Inner   string   `xml:",innerxml"`
	}{XmlnsI: nsInstance, Xmlns: nsSession, Inner: b.String()})
}

var errBasicRequired = tether.NewError(tether.CodeInvalidCredentials, "send the username and password with HTTP Basic authentication")

// authLogin is POST /Auth/Login: HTTP Basic credentials, no body; the
// handset, if any, is named by X-Device-Id.
func (s *server) authLogin(c *fiber.Ctx) error {
	user, pass, ok := basicAuth(c.Get(fiber.HeaderAuthorization))
	if !ok {
		c.Set(fiber.HeaderWWWAuthenticate, `Basic realm="tether", charset="UTF-8"`)
		return errBasicRequired
	}
	g, err := s.Auth.Login(c.UserContext(), auth.LoginRequest{
		Username: user, Password: pass, DeviceRef: deviceHeader(c), Persistent: true,
	})
	if err != nil {
		if toProblem(err).Status == fiber.StatusUnauthorized {
			c.Set(fiber.HeaderWWWAuthenticate, `Basic realm="tether", charset="UTF-8"`)
		}
		return err
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return s.respond(c, fiber.StatusOK, newUserSession(g, time.Now()))
}

// basicAuth reads an HTTP Basic Authorization header.
func basicAuth(header string) (string, string, bool) {
	scheme, encoded, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Basic") {
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(encoded))
	if err != nil {
		return "", "", false
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok || user == "" {
		return "", "", false
	}
	return user, pass, true
}
