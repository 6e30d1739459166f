package api

import (
	_ "embed"
	"net/http"

	"github.com/julienschmidt/httprouter"
)

// OpenAPI is the API's OpenAPI 3 document, served at /api/openapi.json; a
// test checks every handler's answers against it.
//
//go:embed openapi.json
var OpenAPI []byte

// openAPI serves the document, open to all (it holds no data): the one
// answer under /api that is not an envelope.
func openAPI(w http.ResponseWriter, _ *http.Request, _ httprouter.Params) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(OpenAPI)
}
