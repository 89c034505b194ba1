namespace EdgeFleet.Shared.Ota;

/// <summary>
/// Element type names in manifests' schemas and JSON tensors: one table, so the signer's names and the
/// agent's comparison agree. Keyed by the ONNX data type number (TensorProto.DataType, which ONNX Runtime's
/// TensorElementType mirrors).
/// </summary>
public static class TensorTypes
{
    public static string Name(int onnxDataType) => onnxDataType switch
    {
        1 => "float32",
        2 => "uint8",
        3 => "int8",
        6 => "int32",
        7 => "int64",
        8 => "string",
        9 => "bool",
        10 => "float16",
        11 => "float64",
        _ => $"onnx-type-{onnxDataType}",
    };
}
