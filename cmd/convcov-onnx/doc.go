/*
Convcov-onnx re-initializes the depthwise convolutions of ONNX models with filters drawn
from a structured multivariate Gaussian: the closed-form covariance of "Understanding the
Covariance Structure of Convolutional Filters" (Trockman, Willmott, Kolter, ICLR 2023).
Everything else in the model is written back byte for byte.

Usage:

	convcov-onnx scan MODEL [flags]                       list depthwise convolutions, depth d and σ(d)
	convcov-onnx init MODEL -o OUT [flags]                rewrite their filters with the closed form
	convcov-onnx cov --kernel K --sigma S                 the closed-form covariance matrix itself
	convcov-onnx harvest MODEL... -o BANK.npz             collect trained filters' covariances
	convcov-onnx harvest --merge BANK.npz... -o BANK.npz  add banks into one
	convcov-onnx transfer --bank BANK.npz MODEL -o OUT    rewrite filters from a bank
	convcov-onnx plot MODEL|BANK.npz -o PNG               draw each layer's filter covariance as PNG
	convcov-onnx plot --closed-form --kernel K -o PNG     the closed form along a depth schedule
	convcov-onnx plot --filters MODEL [NEW] -o PNG        one layer's filters, before and after
	convcov-onnx help [COMMAND]                           this text, or one command's flags

Run "convcov-onnx COMMAND -h" for a command's flags and an example.

A depthwise convolution is a Conv node whose group equals its input channel count, with a
weight of shape [C*m, 1, k1, ..., kn] (n = 1, 2 or 3). Its weight is rewritten when it is an
initializer or a Constant node, possibly behind Identity nodes and Casts between float
types; otherwise it is skipped with a reason. Depthwise convolutions inside If, Loop and
Scan bodies or model-local functions are reported and skipped. Layer i of the D depthwise
convolutions of the main graph, in topological order, has relative depth d = (i-1)/(D-1).

Filters of layer i are drawn from N(0, Σ(σ(d))), with σ(d) = σ0 + v·d + ½·a·d² from a
preset schedule of the paper:

	fig6             σ0 0.5   v 0.5   a 3     the paper's illustration
	cifar-patch2     σ0 0.08  v 0.37  a 2.9   CIFAR-10, 2x2 patches
	cifar-patch1     σ0 0.16  v 0.74  a 5.8   CIFAR-10, 1x1 patches (doubled)
	imagenet-frozen  σ0 0.15  v 0.5   a 0.25  ImageNet, filters frozen after init
	imagenet-thawed  σ0 0.15  v 0.25  a 1.0   ImageNet, filters trained (default)

The paper specifies no rescaling: the centre tap has variance 0.5 for every kernel size,
several times PyTorch's default depthwise initialization. --scale multiplies the filters.

Covariance transfer, the paper's section 2: harvest keeps, for every depthwise layer of
each model whose weight is stored, the count, sum and sum of outer products of its filters
(and the filters) in an .npz bank that numpy.load opens; filters holding NaN or Inf are
dropped with a warning. Banks made in pieces add up with harvest --merge. transfer gives
each layer of another model the bank's covariance at its relative depth: linear
interpolation over depth (--align-corners=false lines up cell centres instead of the first
and last layers), layers of several models at equal depth averaged first, and square 2-D
kernels of another size made by mean-padding or clipping each block and interpolating over
blocks. --with-mean draws with the bank's mean (default zero), --kronecker uses the nearest
Kronecker square A⊗A, and --direct copies the filters of a model of the same architecture.
transfer takes init's -o, --in-place, --seed, --scale, --only, --verify and --json; verify
takes --bank (with --with-mean, --kronecker, --align-corners) to check fidelity against the
bank's distribution.

plot draws PNG heatmaps with a diverging colour map centred on zero (blue below, white at
zero, red above) and a colour bar per panel (--shared-scale for one): the empirical
covariance of each depthwise layer of a model or a bank in block form (rearranged form for
1-D, 3-D and non-square kernels, or with --rearranged), the closed form along a depth
schedule (--preset, --layers) or at one --sigma, or the filters of one --layer of a model
beside those of its rewritten copy.

Every command that reports (scan, init, verify, cov, harvest, transfer, plot) takes --json
and then prints one JSON document with a "version" field instead of text; README.md lists
the fields. On a terminal, harvest shows a progress bar over its models, and init and
transfer one over the bytes they write, once the work has run for a second; none when
stderr is not a terminal, or with --quiet or --json.

The input file is never modified unless init is given --in-place. Exit status: 0 on
success, 1 when the model is refused or a command fails, 2 on wrong usage.
*/
package main
