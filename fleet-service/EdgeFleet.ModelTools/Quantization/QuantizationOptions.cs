namespace EdgeFleet.ModelTools.Quantization;

public enum QuantizationMode
{
    /// <summary>Weights and activations in INT8, activation ranges from calibration data (QDQ format).</summary>
    Static,

    /// <summary>Weights in INT8, activations quantized at run time from their own range (no calibration data).</summary>
    Dynamic,
}

public enum CalibrationMethod
{
    /// <summary>The observed extremes.</summary>
    MinMax,

    /// <summary>The central <see cref="QuantizationOptions.Percentile"/> percent of the observed values.</summary>
    Percentile,

    /// <summary>The range that minimises the expected squared quantization error (rounding plus clipping) over the observed values.</summary>
    Mse,
}

#pragma warning disable CA1720 // the names are ONNX's element types
public enum ActivationType
{
    UInt8,
    Int8,
}
#pragma warning restore CA1720

public sealed record QuantizationOptions
{
    public QuantizationMode Mode { get; init; } = QuantizationMode.Static;

    public CalibrationMethod Method { get; init; } = CalibrationMethod.MinMax;

    /// <summary>For <see cref="CalibrationMethod.Percentile"/>: the share of values kept inside the range, in percent.</summary>
    public double Percentile { get; init; } = 99.999;

    public ActivationType Activations { get; init; } = ActivationType.UInt8;

    /// <summary>One scale per output channel for weights (the default), or one per tensor.</summary>
    public bool PerChannel { get; init; } = true;

    /// <summary>Even out the channels between consecutive convolutions before calibrating (see <c>ChannelEqualizer</c>).</summary>
    public bool EqualizeChannels { get; init; } = true;

    /// <summary>
    /// Pad the channels around depthwise convolutions to a multiple of this (see <c>DepthwisePadding</c>): 16 suits
    /// ONNX Runtime's int8 kernels on x86 and arm64 (which needs 8); 1 leaves the channels as they are.
    /// </summary>
    public int DepthwiseChannelMultiple { get; init; } = 16;

    public IReadOnlySet<string> ExcludeNodes { get; init; } = new HashSet<string>();

    public IReadOnlySet<string> ExcludeOpTypes { get; init; } = new HashSet<string>();

    /// <summary>At most this many calibration samples are read (all when null).</summary>
    public int? MaxSamples { get; init; }

    public int Threads { get; init; } = Environment.ProcessorCount;
}

/// <summary>What quantization did, for the CLI's report.</summary>
public sealed record QuantizationReport(
    string Mode,
    int QuantizedNodes,
    IReadOnlyDictionary<string, int> QuantizedByOpType,
    int ExcludedNodes,
    int CalibrationSamples,
    int CalibratedTensors,
    long InputBytes,
    long OutputBytes)
{
    /// <summary>What stayed float that the mode could have quantized, with the reason ("3 nodes inside If 'mode' …").</summary>
    public IReadOnlyList<string> KeptFloat { get; init; } = [];

    /// <summary>
    /// The nodes inside subgraphs, per top-level node that holds them: they run float (the quantizer rewrites the
    /// top level only), and the report says so rather than leave it silent.
    /// </summary>
    public static IReadOnlyList<string> SubgraphsKeptFloat(Onnx.OnnxModel model) =>
    [
        .. model.SubgraphNodes().GroupBy(x => x.Holder).Select(g =>
        {
            var ops = string.Join(", ", g.GroupBy(x => x.Node.OpType).OrderBy(o => o.Key, StringComparer.Ordinal)
                .Select(o => $"{o.Key} {o.Count()}"));
            var name = g.Key.Name.Length > 0 ? $" '{g.Key.Name}'" : "";
            return $"{g.Count()} node(s) inside {g.Key.OpType}{name} ({ops}): kept float, subgraphs are not quantized";
        }),
    ];
}
