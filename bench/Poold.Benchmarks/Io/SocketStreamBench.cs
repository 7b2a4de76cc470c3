using System.Net;
using System.Net.Sockets;
using BenchmarkDotNet.Attributes;
using Poold.Io;

namespace Poold.Benchmarks.Io;

/// <summary>
/// A ping-pong over loopback TCP: the client side writes 64 bytes and reads them back from an echo loop on the other
/// side, both sides on the stream under test — Poold's <see cref="SocketStream"/> (its own epoll threads) or .NET's
/// <see cref="NetworkStream"/> (the runtime's socket engine). 100 round trips per invocation; the figures are per round
/// trip; .NET's engine with inline completions, as Poold sets it. Expected: no allocation per round trip on either.
/// </summary>
[MemoryDiagnoser]
public class SocketStreamBench
{
    private const int Size = 64;
    private const int Trips = 100;

    private Stream _client = null!;
    private Stream _server = null!;
    private Task _echo = null!;
    private readonly byte[] _request = new byte[Size];
    private readonly byte[] _reply = new byte[Size];

    [Params("SocketStream", "NetworkStream")]
    public string Engine { get; set; } = "";

    [GlobalSetup]
    public void Setup()
    {
        // As in Poold: .NET's engine runs continuations on its event threads (before its first socket reads it).
        Poold.Hosting.SocketTuning.Apply();
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        client.Connect(listener.LocalEndPoint!);
        var server = listener.Accept();
        server.NoDelay = true;
        _client = Wrap(client);
        _server = Wrap(server);
        _echo = Task.Run(EchoAsync);
    }

    private Stream Wrap(Socket socket) => Engine == "SocketStream" ? new SocketStream(socket) : new NetworkStream(socket, ownsSocket: true);

    private async Task EchoAsync()
    {
        var buffer = new byte[4096];
        int n;
        while ((n = await _server.ReadAsync(buffer)) > 0)
        {
            await _server.WriteAsync(buffer.AsMemory(0, n));
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _client.Dispose();
        _echo.Wait(TimeSpan.FromSeconds(5));
        _server.Dispose();
    }

    [Benchmark(OperationsPerInvoke = Trips, Description = "64-byte round trip")]
    public async Task RoundTrip()
    {
        for (var i = 0; i < Trips; i++)
        {
            await _client.WriteAsync(_request);
            var got = 0;
            while (got < Size)
            {
                got += await _client.ReadAsync(_reply.AsMemory(got));
            }
        }
    }
}
