package inject_test

import (
	"fmt"
	"log"
	"math/rand/v2"

	"github.com/convcov/convcov-onnx/inject"
)

func ExampleClosedForm() {
	// The covariance of a 3×3 filter at σ = 1, in rearranged form: tap (i, j) is 3·i + j.
	r, err := inject.ClosedForm([]int{3, 3}, 1)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("centre variance     %.7f\n", r.At(4, 4))
	fmt.Printf("corner variance     %.7f\n", r.At(0, 0))
	fmt.Printf("centre, right       %.7f\n", r.At(4, 5))
	fmt.Printf("corner, other end   %.7f\n", r.At(0, 2))
	// Output:
	// centre variance     0.5000000
	// corner variance     0.3002118
	// centre, right       0.1839397
	// corner, other end   0.1554625
}

func ExampleProject() {
	// From 5×5 up the closed form is not positive semi-definite; Project clips it.
	r, err := inject.ClosedForm([]int{5, 5}, 1.9)
	if err != nil {
		log.Fatal(err)
	}
	p, err := inject.Project(r)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("smallest eigenvalue %.4f\n", p.Eigenvalues[0])
	fmt.Printf("centre variance before %.4f, after %.4f\n", r.At(12, 12), p.Cov.At(12, 12))

	// Draw 64 filters; filter j is filters[25*j : 25*(j+1)], row-major 5×5.
	filters := make([]float64, 64*25)
	if err := p.Sample(filters, 64, nil, rand.New(rand.NewPCG(1, 2))); err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(filters), "values")
	// Output:
	// smallest eigenvalue -0.1020
	// centre variance before 0.5000, after 0.5254
	// 1600 values
}
