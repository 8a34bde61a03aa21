// Package wire holds the protobuf messages of cnactor's remote protocol
// (wire.proto), carried by protoactor-go's remote. wire.pb.go is generated
// and committed; regenerate it after editing wire.proto with
//
//	go generate ./remote/wire
//
// which needs protoc (Debian: apt-get install protobuf-compiler) and
// protoc-gen-go at the version of google.golang.org/protobuf in go.mod:
//
//	go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
package wire

//go:generate protoc --proto_path=. --go_out=. --go_opt=paths=source_relative wire.proto
