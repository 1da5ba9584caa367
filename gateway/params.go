package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/zmws/zmws/client"
	"github.com/zmws/zmws/protocol"
)

// inputField is the multipart/form-data file field whose content becomes the
// job's input.
const inputField = "input"

// readRequest turns an HTTP request into a job's parameters and input:
//
//   - the query string gives parameters;
//   - an application/x-www-form-urlencoded or multipart/form-data body gives
//     parameters too (a multipart file field named "input" is the input);
//   - an application/json (or */*+json) body must be one JSON object whose
//     values are strings, numbers, booleans or null (null: no parameter);
//   - any other body is the job's input, byte for byte.
//
// A key given more than once keeps its last value; a body parameter beats a
// query one of the same name. An empty name, or two names that map to one
// ZMWS_PARAM_<NAME> variable (protocol.CheckParamNames), are a 400. The body is read through http.MaxBytesReader,
// so a body past Config.MaxBody ends in an *http.MaxBytesError.
func (g *Gateway) readRequest(w http.ResponseWriter, r *http.Request) (client.Request, error) {
	var req client.Request
	params := map[string]string{}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return req, badRequest("malformed query string: %v", err)
	}
	addValues(params, q)

	if r.ContentLength > g.cfg.MaxBody {
		return req, &http.MaxBytesError{Limit: g.cfg.MaxBody}
	}
	body := http.MaxBytesReader(unwrap(w), r.Body, g.cfg.MaxBody)
	defer body.Close()
	mediaType := ""
	var mtParams map[string]string
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mediaType, mtParams, err = mime.ParseMediaType(ct); err != nil {
			return req, badRequest("malformed Content-Type %q: %v", ct, err)
		}
	}
	switch {
	case mediaType == "application/x-www-form-urlencoded":
		data, err := io.ReadAll(body)
		if err != nil {
			return req, bodyError(err)
		}
		form, err := url.ParseQuery(string(data))
		if err != nil {
			return req, badRequest("malformed form body: %v", err)
		}
		addValues(params, form)
	case mediaType == "multipart/form-data":
		boundary := mtParams["boundary"]
		if boundary == "" {
			return req, badRequest("multipart/form-data without a boundary")
		}
		data, err := io.ReadAll(body)
		if err != nil {
			return req, bodyError(err)
		}
		if req.Input, err = readMultipart(data, boundary, params); err != nil {
			return req, err
		}
	case mediaType == "application/json" || strings.HasSuffix(mediaType, "+json"):
		data, err := io.ReadAll(body)
		if err != nil {
			return req, bodyError(err)
		}
		if err := jsonParams(data, params); err != nil {
			return req, err
		}
	default:
		data, err := io.ReadAll(body)
		if err != nil {
			return req, bodyError(err)
		}
		if len(data) > 0 {
			req.Input = data
		}
	}
	// A command gets each parameter as ZMWS_PARAM_<NAME>: two names for
	// one variable would let one silently replace the other.
	if err := protocol.CheckParamNames(params); err != nil {
		return req, badRequest("%v", err)
	}
	if len(params) > 0 {
		req.Params = params
	}
	return req, nil
}

// unwrap returns the innermost ResponseWriter, so that MaxBytesReader can
// tell net/http's own to close the connection after a 413.
func unwrap(w http.ResponseWriter) http.ResponseWriter {
	for {
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return w
		}
		w = u.Unwrap()
	}
}

// addValues copies v into params, the last value of a repeated key winning.
func addValues(params map[string]string, v url.Values) {
	for k, vs := range v {
		if len(vs) > 0 {
			params[k] = vs[len(vs)-1]
		}
	}
}

// jsonParams adds the members of a JSON object to params.
func jsonParams(data []byte, params map[string]string) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return badRequest("malformed JSON body: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("malformed JSON body: data after the object")
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return badRequest("JSON body must be an object of parameters, not %s", jsonKind(v))
	}
	for k, val := range obj {
		switch val := val.(type) {
		case string:
			params[k] = val
		case json.Number:
			params[k] = val.String()
		case bool:
			params[k] = strconv.FormatBool(val)
		case nil:
			delete(params, k)
		default:
			return badRequest("JSON parameter %q is %s: values must be strings, numbers, booleans or null", k, jsonKind(val))
		}
	}
	return nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	}
	return "null"
}

// readMultipart adds the value fields of a multipart/form-data body to
// params and returns the content of its "input" file field, if any. The
// body must end with its close delimiter ("--" boundary "--", RFC 2046
// §5.1.1): mime/multipart takes a body without any boundary line, or one cut
// after a part, for a form with no more parts.
func readMultipart(data []byte, boundary string, params map[string]string) ([]byte, error) {
	closing := []byte("--" + boundary + "--")
	if !bytes.HasPrefix(data, closing) && !bytes.Contains(data, append([]byte("\n"), closing...)) {
		return nil, badRequest("malformed multipart body: no closing boundary --%s--", boundary)
	}
	mr := multipart.NewReader(bytes.NewReader(data), boundary)
	var input []byte
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return input, nil
		}
		if err != nil {
			return nil, badRequest("malformed multipart body: %v", err)
		}
		data, err := io.ReadAll(p)
		if err != nil {
			return nil, badRequest("malformed multipart body: %v", err)
		}
		name := p.FormName()
		switch {
		case name == "":
			return nil, badRequest("multipart part without a form field name")
		case p.FileName() == "":
			params[name] = string(data)
		case name == inputField && input == nil:
			input = data
		default:
			return nil, badRequest("multipart file field %q: only one file, named %q, is accepted (it becomes the job's input)", name, inputField)
		}
	}
}

// bodyError maps an error from reading a request body: past Config.MaxBody
// stays an *http.MaxBytesError (413); the read deadline (Config.ReadTimeout)
// passing is 408, the client being too slow; anything else (a body shorter
// than its Content-Length, broken chunked encoding) is 400. Input never
// makes a 500.
func bodyError(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return err
	}
	var ne net.Error
	if errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return &apiError{http.StatusRequestTimeout, codeRequestTimeout,
			"the request body did not arrive within the read timeout"}
	}
	return badRequest("truncated or malformed request body: %v", err)
}
