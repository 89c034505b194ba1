using System.Net.Sockets;

namespace EdgeFleet.TestServers;

/// <summary>An HTTP client for a server on a Unix domain socket (the agent's local API). Linked into the end-to-end tests too.</summary>
public static class UnixHttp
{
    public static HttpClient Client(string socket) => new(new SocketsHttpHandler
    {
        ConnectCallback = async (_, ct) =>
        {
            var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                await s.ConnectAsync(new UnixDomainSocketEndPoint(socket), ct);
                return new NetworkStream(s, ownsSocket: true);
            }
            catch
            {
                s.Dispose();
                throw;
            }
        },
    })
    { BaseAddress = new Uri("http://agent"), Timeout = TimeSpan.FromSeconds(30) };
}
