package admin

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
)

// maxBody caps request bodies: the largest legitimate one (a node) is a
// few hundred bytes, 64 KiB leaves room and bounds what a client can make
// the server buffer.
const maxBody = 64 << 10

// wantsXML reports whether the client prefers XML: the first of the
// Accept header's media types that names JSON or XML decides; JSON when
// neither is named.
func wantsXML(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		switch mt {
		case "application/xml", "text/xml":
			return true
		case "application/json":
			return false
		}
	}
	return false
}

// writeDoc encodes doc in the client's format with the given status.
func writeDoc(w http.ResponseWriter, r *http.Request, status int, doc any) {
	var buf bytes.Buffer
	ctype := "application/json"
	if wantsXML(r) {
		ctype = "application/xml; charset=utf-8"
		buf.WriteString(xml.Header)
		enc := xml.NewEncoder(&buf)
		enc.Indent("", "  ")
		if err := enc.Encode(doc); err != nil {
			http.Error(w, "encoding failed", http.StatusInternalServerError)
			return
		}
		buf.WriteByte('\n')
	} else {
		enc := json.NewEncoder(&buf)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false) // "weight -1: must be >= 0" stays readable
		if err := enc.Encode(doc); err != nil {
			http.Error(w, "encoding failed", http.StatusInternalServerError)
			return
		}
	}
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// apiError is an error answer in the making.
type apiError struct {
	status  int
	code    string
	msg     string
	details []string
}

func (e *apiError) Error() string { return e.msg }

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

// writeError answers err: an *apiError as it is, a Controller error by the
// sentinel it wraps, anything else as a 500 that hides nothing useful
// from the operator (the API is an operator's tool).
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	var re *ReloadError
	switch {
	case errors.As(err, &ae):
	case errors.As(err, &re):
		ae = &apiError{http.StatusUnprocessableEntity, "reload_failed",
			"reload rejected; the running configuration is unchanged", re.Problems}
	case errors.Is(err, ErrNotFound):
		ae = errorf(http.StatusNotFound, "not_found", "%s", err)
	case errors.Is(err, ErrInvalid):
		ae = errorf(http.StatusBadRequest, "bad_request", "%s", err)
	case errors.Is(err, ErrConflict):
		ae = errorf(http.StatusConflict, "conflict", "%s", err)
	case errors.Is(err, ErrUnsupported):
		ae = errorf(http.StatusNotImplemented, "not_implemented", "%s", err)
	default:
		ae = errorf(http.StatusInternalServerError, "internal", "%s", err)
	}
	if ae.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="protobalance"`)
	}
	writeDoc(w, r, ae.status, ErrorDoc{ErrorBody: ErrorBody{Code: ae.code, Message: ae.msg, Details: ae.details}})
}

// decodeBody reads one JSON object into v: at most maxBody bytes, no
// unknown fields, nothing after the object.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		// curl -d sends application/x-www-form-urlencoded unless told
		// otherwise; the body is parsed as strict JSON all the same.
		if mt, _, err := mime.ParseMediaType(ct); err != nil || !jsonish[mt] {
			return errorf(http.StatusUnsupportedMediaType, "unsupported_media_type",
				"Content-Type %q: send application/json", ct)
		}
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errorf(http.StatusRequestEntityTooLarge, "too_large", "request body over %d bytes", mbe.Limit)
		}
		return errorf(http.StatusBadRequest, "bad_request", "reading body: %v", err)
	}
	return decodeJSON(data, v)
}

// jsonish are the request content types read as JSON.
var jsonish = map[string]bool{"application/json": true, "application/x-www-form-urlencoded": true, "text/plain": true}

// decodeJSON is the pure part of decodeBody (fuzzed): strict decoding of
// exactly one JSON object.
func decodeJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return errorf(http.StatusBadRequest, "bad_request", "empty body: expected a JSON object")
		}
		return errorf(http.StatusBadRequest, "bad_request", "bad JSON: %v", strings.TrimPrefix(err.Error(), "json: "))
	}
	if dec.More() {
		return errorf(http.StatusBadRequest, "bad_request", "bad JSON: data after the object")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errorf(http.StatusBadRequest, "bad_request", "bad JSON: data after the object")
	}
	return nil
}
