using EdgeFleet.ModelTools.Onnx;
using EdgeFleet.ModelTools.Onnx.Proto;

namespace EdgeFleet.ModelTools.Quantization;

/// <summary>
/// Bias correction (Nagel et al., "Data-Free Quantization", 2019): rounding a convolution's weights to int8
/// changes each output channel o by Σ (Ŵ − W)[o, c, k] · x[c, k], whose expectation over the data is
/// Σ (Ŵ − W)[o, c, k] · E[x_c]. That expected shift is a constant per channel, so it is subtracted from the
/// bias, computed with the same rounding the quantizer then applies. Depthwise convolutions, with nine or
/// twenty-five weights per channel, are where the shift is largest; on PaddleOCR's classifier it is most of the
/// disagreement between FP32 and INT8. Zero padding at the borders, where the input is 0 rather than its
/// mean, is not accounted for.
/// </summary>
internal static class BiasCorrection
{
    public static void Apply(OnnxModel model, NodeProto conv, double[] inputMeans, bool perChannel)
    {
        if (model.Initializer(conv.Input[1]) is not { DataType: (int)TensorProto.Types.DataType.Float } weight || weight.Dims.Count < 3)
            return;
        var dims = weight.Dims.ToArray();
        var outputs = (int)dims[0];
        var groupInputs = (int)dims[1];
        var groups = (int)(conv.Attribute.FirstOrDefault(a => a.Name == "group")?.I ?? 1);
        if (groups < 1 || outputs % groups != 0 || inputMeans.Length != groupInputs * groups)
            return;
        var values = Tensors.Floats(weight);
        var (quantized, scales) = QuantMath.SymmetricWeights(values, dims, QdqRewriter.WeightAxis(conv, weight, perChannel));
        var kernel = values.Length / (outputs * groupInputs);
        var perGroup = outputs / groups;
        var bias = conv.Input.Count > 2 && conv.Input[2].Length > 0
            ? model.Initializer(conv.Input[2]) is { DataType: (int)TensorProto.Types.DataType.Float } b ? Tensors.Floats(b) : null
            : new float[outputs];
        if (bias is null || bias.Length != outputs)
            return;
        for (var o = 0; o < outputs; o++)
        {
            var scale = scales.Length == 1 ? scales[0] : scales[o];
            var firstInput = o / perGroup * groupInputs;
            double shift = 0;
            for (var c = 0; c < groupInputs; c++)
            {
                var mean = inputMeans[firstInput + c];
                for (var k = 0; k < kernel; k++)
                {
                    var i = (o * groupInputs + c) * kernel + k;
                    shift += (quantized[i] * scale - values[i]) * mean;
                }
            }
            bias[o] -= (float)shift;
        }
        var name = model.UniqueName($"{conv.Name}_bias_corrected");
        model.Graph.Initializer.Add(Tensors.FromFloats(name, bias, outputs));
        if (conv.Input.Count > 2)
            conv.Input[2] = name;
        else
            conv.Input.Add(name);
    }
}
