module github.com/convcov/convcov-onnx

go 1.26

require (
	codeberg.org/sbinet/npyio v0.14.0
	github.com/yalue/onnxruntime_go v1.27.0
	golang.org/x/image v0.25.0
	golang.org/x/term v0.30.0
	gonum.org/v1/gonum v0.17.0
	google.golang.org/protobuf v1.36.12
)

require (
	github.com/campoy/embedmd v1.0.0 // indirect
	github.com/nlpodyssey/gopickle v0.3.0 // indirect
	github.com/pmezard/go-difflib v1.0.0 // indirect
	golang.org/x/sys v0.31.0 // indirect
	golang.org/x/text v0.34.0 // indirect
)
