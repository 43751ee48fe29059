module github.com/reattest/reattest

go 1.26.0

require (
	github.com/fxamacker/cbor/v2 v2.10.0
	github.com/veraison/cmw v0.2.0
	github.com/veraison/eat v0.0.0-20251105185612-2c0e43e22ea9
	github.com/veraison/go-cose v1.3.0
	golang.org/x/crypto v0.59.0
	gopkg.in/yaml.v3 v3.0.1
)

require (
	github.com/davecgh/go-spew v1.1.1 // indirect
	github.com/google/uuid v1.6.0 // indirect
	github.com/kr/text v0.2.0 // indirect
	github.com/pmezard/go-difflib v1.0.0 // indirect
	github.com/rogpeppe/go-internal v1.16.0 // indirect
	github.com/stretchr/testify v1.11.1 // indirect
	github.com/veraison/swid v1.1.0 // indirect
	github.com/x448/float16 v0.8.4 // indirect
)
