// Package graphscan finds the depthwise convolutions of an ONNX model, where each one's
// weight is stored, and its place in the network.
//
// # Depthwise convolutions
//
// A depthwise convolution is a Conv node of the default domain whose group G >= 2 equals
// its input channel count C, with a weight of shape [G*m, 1, k1, ..., kn]: m is the channel
// multiplier, n = 1, 2 or 3 spatial dims. C comes from the shapes the model declares (graph
// inputs, value_info, outputs); when none is declared it is taken to be G. A Conv whose
// group contradicts its declared channels, whose weight has rank < 3, or whose output
// channels are not a multiple of its group makes the model invalid ([ErrInvalidGraph]).
// ConvTranspose, QLinearConv and ConvInteger are never depthwise convolutions.
//
// # Weights
//
// A layer is rewritten when its weight is an initializer or a Constant node's value,
// possibly reached through Identity nodes and Casts between float types (the source tensor
// is rewritten in its own type). It is skipped, with a reason naming the node and weight,
// when the weight is computed by another op, is a graph input without an initializer, is a
// sparse initializer, is read by any other node, or is a graph output. Depthwise
// convolutions inside If, Loop or Scan bodies and model-local functions are reported in
// [Result.Outside] and never rewritten.
//
// # Depth
//
// D is the number of depthwise convolutions of the main graph, skipped ones included. Their
// order is the topological order of Kahn's algorithm that takes, among ready nodes, the one
// listed first in the file; layer i (1-based) has relative depth d = (i-1)/(D-1), and 0 when
// D = 1. A layer's stage counts the downsampling steps (a Conv or pooling with a stride > 1,
// or SpaceToDepth) on the longest path to its output, its own stride included.
package graphscan
