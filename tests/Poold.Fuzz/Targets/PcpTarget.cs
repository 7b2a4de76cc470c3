using Poold.Auth;
using Poold.Backends;
using Poold.Config;
using Poold.Hosting;
using Poold.Pcp;

namespace Poold.Fuzz.Targets;

/// <summary>
/// The bytes a PCP client sends after logging in. First read packet by packet with the server's length limit, each
/// body split into its strings and error fields; then served by the real PCP server (a fresh two-node registry whose
/// backends cannot be reached, no sessions) after a scripted <c>M</c>/<c>R</c> login, so every request decoder runs.
/// A bad length throws <see cref="PcpProtocolException"/> and a cut packet <see cref="EndOfStreamException"/>; the
/// server answers bad requests with PCP errors and ends on I/O errors only (what PcpServer counts as the client leaving).
/// </summary>
internal static class PcpTarget
{
    private const string User = "fuzz";
    private const string Password = "fuzz-password";

    private static readonly Lazy<FakeHost> Host = new(() => new FakeHost());

    public static void Run(ReadOnlySpan<byte> input)
    {
        ReadPackets(input);
        using var stream = new ScriptedClient(input.ToArray());
        try
        {
            PcpServer.ServeStreamAsync(Host.Value.Fresh(), Serilog.Core.Logger.None, stream, CancellationToken.None).GetAwaiter().GetResult();
        }
        catch (Exception e) when (e is IOException or OperationCanceledException)
        {
            // EndOfStreamException included: the client stopped in the middle of a packet.
        }

        if (!stream.LoggedIn)
        {
            throw new FuzzInvariantException("the scripted login was refused");
        }
    }

    private static void ReadPackets(ReadOnlySpan<byte> input)
    {
        using var stream = new MemoryStream(input.ToArray(), writable: false);
        try
        {
            while (PcpPacket.ReadAsync(stream, PcpPacket.MaxRequestLength, CancellationToken.None).GetAwaiter().GetResult() is var (tag, body))
            {
                if (body.Length >= PcpPacket.MaxRequestLength)
                {
                    throw new FuzzInvariantException($"a '{(char)tag}' packet of {body.Length} bytes passed the length limit");
                }

                _ = PcpPacket.SplitStrings(body);
                _ = PcpPacket.ErrorFields(body);
            }
        }
        catch (Exception e) when (e is PcpProtocolException or EndOfStreamException)
        {
        }
    }

    /// <summary>
    /// The client side: sends <c>M</c>, answers the salt with the right <c>R</c>, then sends the fuzz input and ends.
    /// The server writes each reply before it reads again, so the script needs no threads.
    /// </summary>
    private sealed class ScriptedClient(byte[] input) : Stream
    {
        private byte[] _pending = PcpPacket.Frame((byte)'M', []);
        private int _offset;
        private bool _sentInput;

        public bool LoggedIn { get; private set; }

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            if (_offset == _pending.Length && LoggedIn && !_sentInput)
            {
                (_pending, _offset, _sentInput) = (input, 0, true);
            }

            var n = Math.Min(buffer.Length, _pending.Length - _offset);
            _pending.AsSpan(_offset, n).CopyTo(buffer);
            _offset += n;
            return n;
        }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
            ValueTask.FromResult(Read(buffer.Span));

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            if (!_sentInput && buffer.Length == 9 && buffer[0] == (byte)'m')
            {
                var response = Md5Password.SaltedResponse(Md5Password.Hash(Md5Password.PcpHash(Password), User), buffer[5..])[3..];
                (_pending, _offset) = (PcpPacket.Strings((byte)'R', User, response), 0);
            }
            else if (!_sentInput && buffer.Length > 0 && buffer[0] == (byte)'r')
            {
                LoggedIn = true;
            }
        }

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            Write(buffer.Span);
            return ValueTask.CompletedTask;
        }

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();
    }

    /// <summary>Two backends behind Unix sockets in a directory that does not exist, so reachability checks fail at once.</summary>
    private sealed class FakeHost : IPcpHost
    {
        public FakeHost()
        {
            var dir = Directory.CreateTempSubdirectory("poold-fuzz-pcp-").FullName;
            PcpConfPath = Path.Combine(dir, "pcp.conf");
            File.WriteAllText(PcpConfPath, $"{User}:{Md5Password.PcpHash(Password)}\n");
            var entries = new[] { "backend_hostname0 = '/nonexistent/poold-fuzz'", "backend_port0 = 5432", "backend_hostname1 = '/nonexistent/poold-fuzz'",
                "backend_port1 = 5433", "backend_weight1 = 1" };
            var parsed = new List<ConfEntry>();
            ConfLexer.Parse(string.Join('\n', entries), "fuzz.conf", parsed, []);
            Settings = SettingsBuilder.Build(parsed, Path.Combine(dir, "poold.conf")).Settings ?? throw new InvalidOperationException("fuzz settings do not build");
            Nodes = new NodeRegistry(Settings, TimeProvider.System);
        }

        private FakeHost(FakeHost template)
        {
            PcpConfPath = template.PcpConfPath;
            Settings = template.Settings;
            Nodes = new NodeRegistry(Settings, TimeProvider.System);
        }

        public PooldSettings Settings { get; }

        public NodeRegistry Nodes { get; }

        public IReadOnlyList<Sessions.ClientSession> Sessions => [];

        public string PcpConfPath { get; }

        public DateTimeOffset StartedAt { get; } = DateTimeOffset.UnixEpoch;

        /// <summary>The same settings and pcp.conf with a new node registry, so no input sees another's attach or detach.</summary>
        public FakeHost Fresh() => new(this);

        public void Reload()
        {
        }

        public void RequestStop(StopMode mode)
        {
        }

        public string? DetachNode(int id) => Nodes.Detach(id);
    }
}
