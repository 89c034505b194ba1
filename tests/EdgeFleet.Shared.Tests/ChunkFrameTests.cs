using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Shared.Tests;

public sealed class ChunkFrameTests
{
    private static readonly string Sha = new('a', 64);

    [Fact]
    public void A_data_frame_reads_back_as_written_with_its_header_53_bytes()
    {
        byte[] body = [1, 2, 3, 4, 5];
        var frame = ChunkFrame.Write(Sha, 100, 105, body);
        Assert.Equal(ChunkFrame.HeaderBytes + body.Length, frame.Length);
        Assert.Equal(53, ChunkFrame.HeaderBytes);
        var read = ChunkFrame.TryRead(frame, out var problem)!.Value;
        Assert.Null(problem);
        Assert.Equal((ChunkStatus.Data, Sha, 100L, 105L), (read.Status, read.Sha256, read.Offset, read.Total));
        Assert.Equal(body, read.Body.ToArray());
    }

    [Fact]
    public void A_refusal_carries_its_reason_cut_to_512_bytes()
    {
        var read = ChunkFrame.TryRead(ChunkFrame.Refuse(ChunkStatus.NotAllowed, "not-a-sha", -5, new string('x', 2000)), out _)!.Value;
        Assert.Equal((ChunkStatus.NotAllowed, 0L), (read.Status, read.Offset));
        Assert.Equal(512, read.Reason.Length);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(52)]
    public void Garbage_is_not_a_frame(int length)
    {
        Assert.Null(ChunkFrame.TryRead(new byte[length], out var problem));
        Assert.Contains("header", problem, StringComparison.Ordinal);
        var wrongMagic = ChunkFrame.Write(Sha, 0, 10, [1]);
        wrongMagic[0] = (byte)'X';
        Assert.Null(ChunkFrame.TryRead(wrongMagic, out problem));
        var badStatus = ChunkFrame.Write(Sha, 0, 10, [1]);
        badStatus[4] = 9;
        Assert.Null(ChunkFrame.TryRead(badStatus, out problem));
        // More bytes than the total leaves room for: endless data, refused at the frame.
        Assert.Null(ChunkFrame.TryRead(ChunkFrame.Write(Sha, 8, 10, [1, 2, 3]), out problem));
        Assert.Contains("do not fit", problem, StringComparison.Ordinal);
    }

    [Fact]
    public void The_chunk_topics_belong_to_their_device_and_go_one_way_each()
    {
        Assert.True(Topics.TryParse("ef/v1/d1/ota/chunk/get", out var device, out var kind));
        Assert.Equal(("d1", TopicKind.OtaChunkRequest), (device, kind));
        Assert.True(Topics.IsFromDevice(TopicKind.OtaChunkRequest));
        Assert.False(Topics.IsFromDevice(TopicKind.OtaChunkData));
        Assert.Equal("ef/v1/d1/ota/chunk/data", Topics.For("d1", TopicKind.OtaChunkData));
    }
}
