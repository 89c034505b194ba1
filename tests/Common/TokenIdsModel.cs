using EdgeFleet.ModelTools.Onnx;
using EdgeFleet.ModelTools.Onnx.Proto;
using Google.Protobuf;

namespace EdgeFleet.Tests.Common;

/// <summary>
/// A model whose input is int64 token ids: ids [1, 4] → Gather from the [3, 2] table below → float [1, 4, 2]. Ids
/// 2, 0, 1, 2 give <see cref="Expected"/>.
/// </summary>
public static class TokenIdsModel
{
    public static readonly float[] Table = [0.5f, -1, 2, 0.25f, 1, 3];

    public static readonly float[] Expected = [1, 3, 0.5f, -1, 2, 0.25f, 1, 3];

    public static void Write(string path)
    {
        var onnx = new OnnxModelBuilder("ids", opset: 14)
            .Output("y", 1, 4, 2)
            .Initializer("table", Table, 3, 2)
            .Node("Gather", ["table", "ids"], ["y"])
            .Build();
        onnx.Graph.Input.Add(new ValueInfoProto
        {
            Name = "ids",
            Type = new()
            {
                TensorType = new()
                {
                    ElemType = (int)TensorProto.Types.DataType.Int64,
                    Shape = new() { Dim = { new TensorShapeProto.Types.Dimension { DimValue = 1 }, new TensorShapeProto.Types.Dimension { DimValue = 4 } } },
                },
            },
        });
        File.WriteAllBytes(path, onnx.ToByteArray());
    }
}
