module github.com/redbandit/redbandit

go 1.26.8

require (
	github.com/redis/rueidis v1.0.79
	gonum.org/v1/gonum v0.17.0
)

require golang.org/x/sys v0.47.0 // indirect
