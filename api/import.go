package api

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"path/filepath"
	"strings"

	"github.com/gofiber/fiber/v2"

	"tether"
	"tether/device"
)

var errImportMedia = tether.NewError(tether.CodeUnsupportedMediaType,
	"send the file as text/csv, "+mimeXLSX+", or multipart/form-data with a file field")

// importFormat tells an import file's format from its media type, or from
// the file name's extension.
func importFormat(mediaType, filename string) string {
	switch mediaType {
	case mimeTextCSV, "application/csv":
		return device.FormatCSV
	case mimeXLSX, mimeMSExcel:
		return device.FormatXLSX
	}
	switch strings.ToLower(filepath.Ext(filename)) {
	case ".csv":
		return device.FormatCSV
	case ".xlsx":
		return device.FormatXLSX
	}
	return ""
}

// importFile returns the uploaded file and its format: the body itself, or
// the "file" part of a multipart form.
func importFile(c *fiber.Ctx) (io.Reader, string, error) {
	mt, _, err := mime.ParseMediaType(c.Get(fiber.HeaderContentType))
	if err != nil {
		return nil, "", errImportMedia
	}
	if mt != fiber.MIMEMultipartForm {
		f := importFormat(mt, "")
		if f == "" {
			return nil, "", errImportMedia
		}
		return bytes.NewReader(c.Body()), f, nil
	}
	fh, err := c.FormFile("file")
	if err != nil {
		return nil, "", tether.Invalid("file", "file_required", "the form has no file field")
	}
	f := importFormat(fh.Header.Get(fiber.HeaderContentType), fh.Filename)
	if f == "" {
		return nil, "", errImportMedia
	}
	file, err := fh.Open()
	if err != nil {
		return nil, "", err
	}
	data, err := io.ReadAll(file)
	return bytes.NewReader(data), f, errors.Join(err, file.Close())
}

// importDevices is POST /v1/devices/import[?dryRun=true][&skipInvalid=true].
func (s *server) importDevices(c *fiber.Ctx) error {
	var opts device.ImportOptions
	for name, dst := range map[string]*bool{"dryRun": &opts.DryRun, "skipInvalid": &opts.SkipInvalid} {
		switch strings.ToLower(c.Query(name)) {
		case "", "false":
		case "true":
			*dst = true
		default:
			return invalidRequest("%s must be true or false", name)
		}
	}
	r, format, err := importFile(c)
	if err != nil {
		return err
	}
	report, err := s.Devices.ImportFile(c.UserContext(), principal(c).Device(), r, format, opts)
	if errors.Is(err, device.ErrImportInvalid) {
		return device.ErrImportInvalid.With("report", report)
	}
	if err != nil {
		return err
	}
	return s.respond(c, fiber.StatusOK, report, xmlNames("import", "issue"))
}
