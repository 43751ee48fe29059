// Command agent will run the reattest gateway-and-agent demo.
package main

import "fmt"

func main() {
	fmt.Println("reattest demo: not yet (see issue 5)")
}
