package apitest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/docker-watcher/stale-exporter/internal/api"
)

// Contract is the API's OpenAPI document, loaded once, that every answer
// of a Server is checked against.
type Contract struct {
	Doc    *openapi3.T
	router routers.Router
	mu     sync.Mutex
	// seen are the operations answered, with the statuses they answered.
	seen map[string]map[int]bool
}

// LoadContract loads and validates the served document.
func LoadContract() (*Contract, error) {
	doc, err := openapi3.NewLoader().LoadFromData(api.OpenAPI)
	if err != nil {
		return nil, fmt.Errorf("load the OpenAPI document: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("the OpenAPI document is not valid: %w", err)
	}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("route the OpenAPI document: %w", err)
	}
	return &Contract{Doc: doc, router: router, seen: map[string]map[int]bool{}}, nil
}

// Check checks an answer to req against the document: its status must be
// one the operation documents, and its headers and body must fit that
// response. A request for no documented operation (an unknown path, a
// method not served) is not checked, and reported as not found.
func (c *Contract) Check(req *http.Request, status int, header http.Header, body []byte) (found bool, err error) {
	route, params, err := c.router.FindRoute(req)
	// The router forgives a trailing slash the exporter does not: such a
	// path is no operation.
	if err != nil || strings.Count(req.URL.Path, "/") != strings.Count(route.Path, "/") {
		return false, nil
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 status,
		Header:                 header,
		Body:                   io.NopCloser(bytes.NewReader(body)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	c.mu.Lock()
	op := route.Method + " " + route.Path
	if c.seen[op] == nil {
		c.seen[op] = map[int]bool{}
	}
	c.seen[op][status] = true
	c.mu.Unlock()
	if err := openapi3filter.ValidateResponse(req.Context(), in); err != nil {
		return true, fmt.Errorf("%s %s answered %d not as documented: %w", req.Method, req.URL.Path, status, err)
	}
	return true, nil
}

// Unseen lists the documented operations and statuses no checked answer
// had.
func (c *Contract) Unseen() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var unseen []string
	for path, item := range c.Doc.Paths.Map() {
		for method, op := range item.Operations() {
			for code := range op.Responses.Map() {
				var status int
				if _, err := fmt.Sscan(code, &status); err != nil {
					continue
				}
				if !c.seen[method+" "+path][status] {
					unseen = append(unseen, fmt.Sprintf("%s %s %d", method, path, status))
				}
			}
		}
	}
	return unseen
}
