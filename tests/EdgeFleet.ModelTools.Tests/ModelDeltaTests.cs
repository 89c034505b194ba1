using System.Security.Cryptography;
using EdgeFleet.ModelTools.Demo;
using EdgeFleet.ModelTools.Onnx;
using EdgeFleet.Shared.Ota;
using EdgeFleet.Tests.Common;

namespace EdgeFleet.ModelTools.Tests;

/// <summary>Model deltas: both methods rebuild the exact target; damage, a wrong base and a wrong length never pass as the target.</summary>
public sealed class ModelDeltaTests
{
    private static readonly byte[] V1 = DemoModelTrainer.Train(seed: 42, perClass: 100, epochs: 10).OnnxBytes;
    private static readonly byte[] V2 = DemoModelTrainer.Train(seed: 43, perClass: 100, epochs: 10).OnnxBytes;

    [Fact]
    public void A_fine_tuned_detector_head_rebuilds_exactly_from_either_method_and_the_onnx_aware_one_is_smaller_than_generic()
    {
        var detector = File.ReadAllBytes(TestModels.Detector);
        var tuned = FineTune.Head(detector, layers: 12);
        Assert.NotEqual(detector, tuned);
        var candidates = ModelDeltas.Encode(detector, tuned);
        Assert.Equal(2, candidates.Count);
        foreach (var c in candidates)
            Assert.Equal(tuned, ModelDelta.Apply(detector, c.Bytes, tuned.Length));
        var xor = candidates.Single(c => c.Method == DeltaMethod.XorPlanes).Bytes.Length;
        var generic = candidates.Single(c => c.Method == DeltaMethod.ZstdPatch).Bytes.Length;
        Assert.True(xor < generic, $"xor-planes {xor} bytes, zstd patch {generic}");
        // Most of the detector did not change: the delta is a small part of the file.
        Assert.True(xor < tuned.Length / 5, $"{xor} of {tuned.Length}");
    }

    [Fact]
    public void A_retrained_model_whose_every_weight_changed_still_rebuilds_and_the_segments_match_its_initializers()
    {
        var segments = ModelDeltas.Segments(V1, V2);
        Assert.Equal(ModelDeltas.RawInitializers(V2).Count, segments.Count);
        Assert.All(segments, s => Assert.Equal(4, s.ElementSize));
        foreach (var c in ModelDeltas.Encode(V1, V2))
            Assert.Equal(V2, ModelDelta.Apply(V1, c.Bytes, V2.Length));
        Assert.Empty(ModelDeltas.Segments(V1, [1, 2, 3])); // not a model: generic only
        Assert.Single(ModelDeltas.Encode(V1, [1, 2, 3]));
    }

    [Fact]
    public void Damage_a_wrong_base_or_a_wrong_length_is_refused_or_fails_the_target_hash()
    {
        var target = Convert.ToHexStringLower(SHA256.HashData(V2));
        foreach (var c in ModelDeltas.Encode(V1, V2))
        {
            Assert.Throws<InvalidDataException>(() => ModelDelta.Apply(V1, c.Bytes, V2.Length + 1));
            Assert.Throws<InvalidDataException>(() => ModelDelta.Apply(V1, c.Bytes.AsSpan(0, c.Bytes.Length - 10), V2.Length));
            Assert.Throws<InvalidDataException>(() => ModelDelta.Apply(V1, c.Bytes.AsSpan(0, 3), V2.Length));
            // A bit flipped in the compressed body: the frame's checks refuse it, or the result is not the target.
            for (var at = c.Bytes.Length - 40; at < c.Bytes.Length; at += 7)
            {
                var damaged = c.Bytes.ToArray();
                damaged[at] ^= 0x10;
                try
                {
                    Assert.NotEqual(target, Convert.ToHexStringLower(SHA256.HashData(ModelDelta.Apply(V1, damaged, V2.Length))));
                }
                catch (InvalidDataException)
                {
                }
            }
            // Against another base: a well-formed delta, other bytes.
            var other = DemoModelTrainer.Train(seed: 44, perClass: 100, epochs: 10).OnnxBytes;
            try
            {
                Assert.NotEqual(target, Convert.ToHexStringLower(SHA256.HashData(ModelDelta.Apply(other, c.Bytes, V2.Length))));
            }
            catch (InvalidDataException)
            {
            }
        }
    }

    [Fact]
    public void A_segment_table_that_points_outside_the_files_is_refused()
    {
        var delta = ModelDelta.Encode(V1, V2, DeltaMethod.XorPlanes, ModelDeltas.Segments(V1, V2));
        // The first segment's base offset (bytes 17..24 of the table) made huge.
        var bad = delta.ToArray();
        System.Buffers.Binary.BinaryPrimitives.WriteInt64BigEndian(bad.AsSpan(4 + 1 + 8 + 4 + 16), long.MaxValue / 2);
        var error = Assert.Throws<InvalidDataException>(() => ModelDelta.Apply(V1, bad, V2.Length));
        Assert.Contains("outside the files", error.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => ModelDelta.Encode(V1, V2, DeltaMethod.XorPlanes, [new DeltaSegment(0, 3, 0, 4)]));
    }
}
