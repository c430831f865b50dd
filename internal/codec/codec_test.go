package codec

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"tether/storage"
)

// The stored records' codec must write the bytes encoding/json writes and
// read what it wrote, so that a store written by one build reads the same
// in another, with no migration.

// hostileRecords are the sample records with every string (and raw JSON
// member) made hostile, and empty and zero forms of each.
func hostileRecords() []any {
	d, u, s := sampleRecords()
	out := []any{d, u, s, storage.Device{}, storage.User{}, storage.Session{}}
	for _, v := range []any{&d, &u, &s} {
		setStrings(reflect.ValueOf(v).Elem(), hostile)
	}
	d.Key.JWK = json.RawMessage(`{"crv":"P-256","x":"` + hostileJSON + `","n":1.5e3,"a":[true,null,{}]}`)
	u.Profile = json.RawMessage(`{"k":"\u0000\ud800\udc00","nested":{"deep":[1,-2,3.25,"\u2028"]},"e":""}`)
	s.RevokedAt, s.RenewedAt, s.AuthTime = time.Time{}, time.Time{}, time.Time{} // omitzero
	s.IdleTimeout = -time.Nanosecond
	zone := time.FixedZone("", -(3*3600 + 30*60))
	u.CreatedAt = time.Date(9999, 12, 31, 23, 59, 59, 999999999, zone)
	u.UpdatedAt = time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC)
	d.EnrolledAt = time.Date(2026, 3, 29, 2, 30, 0, 0, time.FixedZone("CEST", 2*3600))
	d.IccIDs, d.AssignedUsers = []string{}, []string{"", hostile}
	u.Features, u.Scopes = nil, []string{}
	u.MFA.RecoveryCodes = [][]byte{{}, nil, []byte(hostile)}
	s.FamilyHash, s.RefreshHash = []byte{}, nil
	d2 := d
	d2.Key = &storage.DeviceKey{JWK: json.RawMessage(`null`)}
	return append(out, d, u, s, d2)
}

// hostileJSON is hostile as a JSON string's content: every escape form.
const hostileJSON = `\u0000\u001f\"\\\/\b\f\n\r\t\u003c\u003e\u0026\u2028\u2029\ufffd\ud83d\ude00é`

// setStrings sets every string reachable from v to s (+ the field's name,
// so that no two are alike).
func setStrings(v reflect.Value, s string) {
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Pointer:
		if !v.IsNil() {
			setStrings(v.Elem(), s)
		}
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return
		}
		for i := range v.Len() {
			setStrings(v.Index(i), s)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				setStrings(v.Field(i), s+v.Type().Field(i).Name)
			}
		}
	}
}

// freshOf returns a new zero value of v's type, for decoding into.
func freshOf(v any) any { return reflect.New(reflect.TypeOf(v)).Interface() }

func TestCodecWritesWhatEncodingJSONWrites(t *testing.T) {
	for i, rec := range hostileRecords() {
		want, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Encode(rec)
		if err != nil {
			t.Fatalf("%d: encode: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%d %T: got\n%s\nwant\n%s", i, rec, got, want)
		}
		// EncodeTo appends the same bytes.
		buf := bytes.NewBufferString("before")
		if err := EncodeTo(buf, rec); err != nil || buf.String() != "before"+string(want) {
			t.Errorf("%d %T: EncodeTo wrote\n%s, %v\nwant\nbefore%s", i, rec, buf, err, want)
		}
	}
	// A value it cannot write leaves the buffer as it was.
	buf := bytes.NewBufferString("before")
	if err := EncodeTo(buf, map[string]any{"a": make(chan int)}); err == nil || buf.String() != "before" {
		t.Errorf("EncodeTo of a channel: %v, buffer %q", err, buf)
	}
}

func TestCodecReadsWhatEncodingJSONWrote(t *testing.T) {
	for i, rec := range hostileRecords() {
		data, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		want := freshOf(rec)
		if err := json.Unmarshal(data, want); err != nil {
			t.Fatal(err)
		}
		got := freshOf(rec)
		if err := Decode(data, got); err != nil {
			t.Fatalf("%d %T: decode: %v", i, rec, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%d %T: got\n%+v\nwant\n%+v", i, rec, got, want)
		}
		// What it wrote, encoding/json reads back as the record.
		again, err := Encode(got)
		if err != nil {
			t.Fatal(err)
		}
		back := freshOf(rec)
		if err := json.Unmarshal(again, back); err != nil {
			t.Fatalf("%d %T: encoding/json reads the codec's bytes: %v", i, rec, err)
		}
		if !reflect.DeepEqual(back, want) {
			t.Errorf("%d %T: round trip got\n%+v\nwant\n%+v", i, rec, back, want)
		}
	}
}

// TestCodecDecodesAsEncodingJSON reads JSON encoding/json never writes
// but a store may hold (a newer build's fields, hand edits): the same
// record either way.
func TestCodecDecodesAsEncodingJSON(t *testing.T) {
	for _, tc := range []struct {
		name string
		data string
		into func() any
	}{
		{"unknown fields", `{"id":"dev_1","future":{"a":[1,{"b":null}],"c":"\u0000"},"imei":"1","more":[],"x":1e400000}`, func() any { return new(storage.Device) }},
		{"null members", `{"id":null,"iccIds":null,"key":null,"hasIccCard":null,"enrolledAt":null,"osApi":null}`, func() any { return new(storage.Device) }},
		{"whitespace", " \t\n{ \"id\" : \"dev_1\" ,\r\n \"assignedUsers\" : [ \"usr_1\" , \"usr_2\" ] }\n ", func() any { return new(storage.Device) }},
		{"keys in another case", `{"ID":"dev_1","Imei":"2","STATUS":"retired"}`, func() any { return new(storage.Device) }},
		{"duplicate keys", `{"id":"a","id":"b","iccIds":["x"],"iccIds":["y","z"]}`, func() any { return new(storage.Device) }},
		{"escapes in keys", `{"\u0069d":"dev_1","username":"\ud800","email":"\udc00x\ud83d"}`, func() any { return new(storage.User) }},
		{"invalid utf-8", "{\"username\":\"a\xff\xfeb\xed\xa0\x80\",\"features\":[\"\xc3\"]}", func() any { return new(storage.User) }},
		{"base64", `{"familyHash":"AAEC/w==","refreshHash":"","replay":null,"accessHash":"+/+/"}`, func() any { return new(storage.Session) }},
		{"numbers", `{"key":18446744073709551615,"idleTimeout":-9223372036854775808}`, func() any { return new(storage.Session) }},
		{"raw json", `{"profile":{ "a" : [ 1 , 2 ] , "b":"\u003c" },"mfa":{"factors":[{"id":"f","totp":{"secret":"AA==","lastStep":-1}}]}}`, func() any { return new(storage.User) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, got := tc.into(), tc.into()
			wantErr := json.Unmarshal([]byte(tc.data), want)
			gotErr := Decode([]byte(tc.data), got)
			if (gotErr == nil) != (wantErr == nil) {
				t.Fatalf("got error %v; want %v", gotErr, wantErr)
			}
			if wantErr == nil && !reflect.DeepEqual(got, want) {
				t.Errorf("got\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

// TestCodecCopiesOut checks that a decoded record keeps nothing of its
// input: bbolt's bytes are valid only until the transaction ends.
func TestCodecCopiesOut(t *testing.T) {
	for i, rec := range hostileRecords() {
		data, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		got := freshOf(rec)
		if err := Decode(data, got); err != nil {
			t.Fatal(err)
		}
		want := freshOf(rec)
		if err := json.Unmarshal(data, want); err != nil {
			t.Fatal(err)
		}
		for j := range data {
			data[j] = 'X'
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%d %T: changed with its input:\n%+v", i, rec, got)
		}
	}
}

func TestCodecRejectsWhatEncodingJSONRejects(t *testing.T) {
	for _, data := range []string{``, `{`, `{"id":"a"`, `{"id":1}`, `{"id":"a"} x`, `[]`, `{"key":-1}`, `{"familyHash":"!!"}`, `{"createdAt":"yesterday"}`, "{\"id\":\"\x00\"}"} {
		var want, got storage.Session
		wantErr := json.Unmarshal([]byte(data), &want)
		gotErr := Decode([]byte(data), &got)
		if (gotErr == nil) != (wantErr == nil) {
			t.Errorf("%q: got error %v; want %v", data, gotErr, wantErr)
		}
	}
}

// storedKinds are the types the stores keep, each a zero value (the last
// is the shape of bbolt's sink lease).
var storedKinds = []any{
	storage.Device{}, storage.User{}, storage.Session{}, storage.APIKey{}, storage.Event{},
	storage.EnrollmentCode{}, storage.SigningKey{}, storage.OAuthClient{}, storage.AuthCode{},
	storage.DeviceCode{}, []storage.EventRoute{}, storage.OutboxEntry{}, storage.DeadLetter{},
	struct {
		Holder string    `json:"holder"`
		Until  time.Time `json:"until"`
	}{},
}

// filled returns a value of t with every field set, hostile where it is
// text; seed tells values apart.
func filled(t reflect.Type, seed int) reflect.Value {
	v := reflect.New(t).Elem()
	switch {
	case t == reflect.TypeFor[time.Time]():
		zone := time.FixedZone("", (seed%25-12)*3600+seed%2*1800)
		v.Set(reflect.ValueOf(time.Date(2000+seed, time.Month(1+seed%12), 1+seed%28, seed%24, seed%60, seed%60, seed*1234567%1e9, zone)))
		return v
	case t == reflect.TypeFor[json.RawMessage]():
		v.SetBytes([]byte(`{"s":"` + hostileJSON + `","n":-1.25e-3,"a":[true,false,null,{}],"o":{"k":[]}}`))
		return v
	}
	switch t.Kind() {
	case reflect.String:
		v.SetString(hostile + strings.Repeat("x", seed%3))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(-int64(seed) * 1e6 % (1 << (t.Bits() - 2)))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		v.SetUint(uint64(seed) * 1e6 % (1 << (t.Bits() - 1)))
	case reflect.Float32, reflect.Float64:
		v.SetFloat(float64(seed) / 3)
	case reflect.Pointer:
		v.Set(filled(t.Elem(), seed+1).Addr())
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			b := make([]byte, 17+seed%5)
			for i := range b {
				b[i] = byte(seed*37 + i*101)
			}
			v.SetBytes(b)
			return v
		}
		v.Set(reflect.MakeSlice(t, 0, 2))
		v.Set(reflect.Append(v, filled(t.Elem(), seed+1), filled(t.Elem(), seed+2)))
	case reflect.Map:
		v.Set(reflect.MakeMap(t))
		for i := range 3 {
			v.SetMapIndex(filled(t.Key(), seed+10*i), filled(t.Elem(), seed+i))
		}
	case reflect.Struct:
		for i := range t.NumField() {
			if t.Field(i).IsExported() {
				v.Field(i).Set(filled(t.Field(i).Type, seed+i))
			}
		}
	default:
		panic("filled: no value for " + t.String())
	}
	return v
}

// TestCodecEveryStoredKind holds the codec to encoding/json's bytes and
// values on every kind of record the store keeps, every field set and
// every field zero.
func TestCodecEveryStoredKind(t *testing.T) {
	for _, kind := range storedKinds {
		typ := reflect.TypeOf(kind)
		for _, rec := range []any{kind, filled(typ, 1).Interface(), filled(typ, 7).Interface()} {
			want, err := json.Marshal(rec)
			if err != nil {
				t.Fatalf("%s: %v", typ, err)
			}
			got, err := Encode(rec)
			if err != nil {
				t.Fatalf("%s: encode: %v", typ, err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s: got\n%s\nwant\n%s", typ, got, want)
			}
			wantRec, gotRec := freshOf(rec), freshOf(rec)
			if err := json.Unmarshal(want, wantRec); err != nil {
				t.Fatal(err)
			}
			if err := Decode(want, gotRec); err != nil {
				t.Fatalf("%s: decode: %v", typ, err)
			}
			if !reflect.DeepEqual(gotRec, wantRec) {
				t.Errorf("%s: decoded\n%+v\nwant\n%+v", typ, gotRec, wantRec)
			}
		}
	}
}
