using EdgeFleet.Fleet.Ota;

namespace EdgeFleet.Fleet.Tests;

public sealed class ArtifactStoreTests
{
    [Fact]
    public async Task A_relative_directory_yields_rooted_paths_that_can_be_served()
    {
        // The default Fleet:Storage:ArtifactsPath is relative (data/artifacts); files are served by path, which must be rooted.
        var relative = Path.GetRelativePath(Environment.CurrentDirectory, Directory.CreateTempSubdirectory("edgefleet-artifacts-").FullName);
        var store = new ArtifactStore(relative);
        using var content = new MemoryStream([1, 2, 3]);
        var (sha, length) = await store.PutAsync(content, 100, default);
        var path = store.Find(sha);
        Assert.NotNull(path);
        Assert.True(Path.IsPathRooted(path), path);
        Assert.Equal(3, length);
        Assert.Equal([1, 2, 3], await File.ReadAllBytesAsync(path));
        Directory.Delete(Path.GetFullPath(relative), recursive: true);
    }
}
