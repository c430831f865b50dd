package api

import "testing"

// TestUserGUID pins the Guids token-login shows: a version 5 UUID, checked
// against Python's uuid module (uuid5(NAMESPACE_DNS, "python.org") and
// uuid5 in Tether's namespace). A change here changes every client's user
// ids.
func TestUserGUID(t *testing.T) {
	dns := [16]byte{0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8}
	cases := []struct{ name, got, want string }{
		{"RFC namespace DNS", nameUUID(dns, "python.org"), "886313e1-3b8a-5372-9b90-0c9aee199e5d"},
		{"a user id", userGUID("usr_01M815ZK7Q3S7D0ZNRXC6P9W1H"), "e0d0beec-e096-5106-b076-455c814d1945"},
		{"the same id again", userGUID("usr_01M815ZK7Q3S7D0ZNRXC6P9W1H"), "e0d0beec-e096-5106-b076-455c814d1945"},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("%s: got %s; want %s", c.name, c.got, c.want)
		}
	}
	if a, b := userGUID("usr_a"), userGUID("usr_b"); a == b {
		t.Errorf("two users, one Guid: %s", a)
	}
}
