package api

import (
	"context"
	"strings"

	"tether/auth"
	"tether/storage"
)

// names finds, for the views of one answer, what people know the records
// they show by: the usernames of user ids, the names of API keys, the
// IMEIs and labels of handsets. Each kind is read in one batch per call of
// learn, and nothing twice; the ids stay in the views beside their names.
type names struct {
	s *server
	// users holds usernames by user id (device.Service.LearnUsernames
	// fills it too); asked the ids already looked for, found or not.
	users   map[string]string
	asked   map[string]bool
	devices map[string]storage.DeviceName
	// keys and codes name API keys and enrollment codes, by id: every one
	// is read the first time an actor needs one.
	keys  map[string]string
	codes map[string]string
	// modes holds the modes of the handsets learned, by id.
	modes map[string]storage.DeviceMode
}

func (s *server) names() *names {
	return &names{s: s, users: map[string]string{}, asked: map[string]bool{}, devices: map[string]storage.DeviceName{}, modes: map[string]storage.DeviceMode{}}
}

// Actors other than principals: a handset that enrolled itself with a code
// is recorded as enrolled by "code:<id>".
const actorCode = "code"

// learn reads the names of the users, devices and actors (such as
// "user:usr_…" or "apikey:ak_…") it does not know yet.
func (n *names) learn(ctx context.Context, userIDs, deviceIDs, actors []string) error {
	var needKeys, needCodes bool
	for _, a := range actors {
		kind, id, _ := strings.Cut(a, ":")
		switch kind {
		case string(auth.KindUser):
			userIDs = append(userIDs, id)
		case string(auth.KindAPIKey):
			needKeys = needKeys || n.keys == nil
		case actorCode:
			needCodes = needCodes || n.codes == nil
		}
	}
	var users []string
	for _, id := range userIDs {
		if _, known := n.users[id]; id != "" && !known && !n.asked[id] {
			n.asked[id] = true
			users = append(users, id)
		}
	}
	if len(users) > 0 {
		found, err := n.s.Users.Usernames(ctx, users)
		if err != nil {
			return err
		}
		for id, name := range found {
			n.users[id] = name
		}
	}
	var devices []string
	for _, id := range deviceIDs {
		if _, known := n.devices[id]; id != "" && !known {
			n.devices[id] = storage.DeviceName{} // asked, found or not
			devices = append(devices, id)
		}
	}
	if len(devices) > 0 {
		found, err := n.s.Devices.Names(ctx, devices)
		if err != nil {
			return err
		}
		for id, name := range found {
			n.devices[id] = name
		}
	}
	if needKeys {
		keys, err := n.s.APIKeys.List(ctx)
		if err != nil {
			return err
		}
		n.keys = make(map[string]string, len(keys))
		for _, k := range keys {
			// A key without a name is told by the start of its secret,
			// as the list of keys shows it.
			n.keys[k.ID] = k.Name
			if k.Name == "" {
				n.keys[k.ID] = k.Hint + "…"
			}
		}
	}
	if needCodes {
		// Names of what a record the caller may see says of its actors:
		// the codes of the whole fleet are looked in.
		codes, err := n.s.Auth.ListEnrollmentCodes(ctx, auth.Principal{})
		if err != nil {
			return err
		}
		n.codes = make(map[string]string, len(codes))
		for _, c := range codes {
			n.codes[c.ID] = c.Label
		}
	}
	return nil
}

// actor names an actor learn has seen: a username, an API key's name, an
// enrollment code's label; "" when there is none (the command line, a
// record since deleted).
func (n *names) actor(a string) string {
	kind, id, _ := strings.Cut(a, ":")
	switch kind {
	case string(auth.KindUser):
		if name := n.users[id]; name != id {
			return name
		}
	case string(auth.KindAPIKey):
		return n.keys[id]
	case actorCode:
		return n.codes[id]
	}
	return ""
}
