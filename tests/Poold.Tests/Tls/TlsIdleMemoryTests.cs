using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography;
using Poold.Tls;

namespace Poold.Tests.Tls;

public class TlsIdleMemoryTests
{
    [Test]
    public async Task AServerConnection_TakesTheMode_AndCarriesDataBothWaysBetweenIdleSpells()
    {
        using var certificate = TestCertificates.SelfSignedLocalhost();

        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        using var clientSocket = new TcpClient();
        var accept = listener.AcceptTcpClientAsync();
        await clientSocket.ConnectAsync(IPAddress.Loopback, ((IPEndPoint)listener.LocalEndpoint).Port);
        using var serverSocket = await accept;

        await using var server = new SslStream(serverSocket.GetStream());
        await using var client = new SslStream(clientSocket.GetStream(), false,
            (_, presented, _, _) => presented is not null && presented.GetCertHashString() == certificate.GetCertHashString());
        await Task.WhenAll(
            server.AuthenticateAsServerAsync(new SslServerAuthenticationOptions { ServerCertificate = certificate }),
            client.AuthenticateAsClientAsync(new SslClientAuthenticationOptions { TargetHost = "localhost" }));

        var (modeSet, buffersFreed) = TlsIdleMemory.ReleaseBuffersWhenIdle(server);
        Assert.That(modeSet, Is.True, "OpenSSL 3 and .NET's SslStream on Linux: the mode is set");
        Assert.That(buffersFreed, Is.EqualTo(2), "both memory BIOs were empty after the handshake and gave their buffers back");

        var buffer = new byte[70_000];
        for (var round = 0; round < 5; round++)
        {
            // Each exchange starts from empty buffers (released while idle) and spans several TLS records.
            var payload = RandomNumberGenerator.GetBytes(40_000 + round);
            await client.WriteAsync(payload);
            await client.FlushAsync();
            Assert.That(await ReadExactlyAsync(server, buffer, payload.Length), Is.EqualTo(payload));
            await server.WriteAsync(payload);
            await server.FlushAsync();
            Assert.That(await ReadExactlyAsync(client, buffer, payload.Length), Is.EqualTo(payload));
        }
    }

    private static async Task<byte[]> ReadExactlyAsync(Stream stream, byte[] buffer, int length)
    {
        await stream.ReadExactlyAsync(buffer.AsMemory(0, length)).AsTask().WaitAsync(TimeSpan.FromSeconds(30));
        return buffer[..length];
    }
}
