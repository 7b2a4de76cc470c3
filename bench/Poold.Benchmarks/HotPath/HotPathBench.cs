using System.Buffers;
using System.Security.Cryptography;
using System.Text;
using BenchmarkDotNet.Attributes;
using Poold.Auth;
using Poold.Protocol;
using Poold.Routing;

namespace Poold.Benchmarks.HotPath;

/// <summary>
/// The per-message work of the relay: splitting a buffer of backend frames (a typical SELECT reply: RowDescription,
/// DataRows, CommandComplete, ReadyForQuery) the way the reply pump does. Expected: no allocation per message.
/// </summary>
[MemoryDiagnoser]
public class FrameParsingBench
{
    private ReadOnlySequence<byte> _reply;

    [GlobalSetup]
    public void Setup()
    {
        var b = new MessageBuffer(4096);
        b.TextRowDescription(["aid", "abalance"]);
        for (var i = 0; i < 10; i++)
        {
            b.TextDataRow([i.ToString(System.Globalization.CultureInfo.InvariantCulture), "0"]);
        }

        b.CommandComplete("SELECT 10");
        b.ReadyForQuery(TransactionStatus.Idle);
        _reply = new ReadOnlySequence<byte>(b.Written.ToArray());
    }

    [Benchmark(Description = "split a 13-frame SELECT reply")]
    public int SplitReply()
    {
        var buffer = _reply;
        var frames = 0;
        while (FrameReader.TryReadHeader(buffer, int.MaxValue, out var code, out var length) && buffer.Length >= 1 + length)
        {
            if (code == (byte)BackendCode.ReadyForQuery)
            {
                frames += buffer.Slice(5, 1).FirstSpan[0];
            }

            buffer = buffer.Slice(1 + length);
            frames++;
        }

        return frames;
    }
}

/// <summary>
/// The reader of the relay: one backend reply per read through <see cref="ContiguousPipeReader"/> (a zero-byte wait,
/// the read, the frames split, everything consumed), from a stream that answers at once. Expected: no allocation per
/// reply (the buffer goes back to the pool when consumed and is rented again).
/// </summary>
[MemoryDiagnoser]
public class RelayReaderBench
{
    private ContiguousPipeReader _reader = null!;

    [GlobalSetup]
    public void Setup()
    {
        var b = new MessageBuffer(512);
        b.TextRowDescription(["abalance"]);
        b.TextDataRow(["0"]);
        b.CommandComplete("SELECT 1");
        b.ReadyForQuery(TransactionStatus.Idle);
        _reader = new ContiguousPipeReader(new RepeatingStream(b.Written.ToArray()), bufferSize: 16 * 1024, minimumReadSize: 4096);
    }

    [GlobalCleanup]
    public void Cleanup() => _reader.Complete();

    [Benchmark(Description = "read and split one SELECT reply")]
    public async Task<int> ReadReply()
    {
        var result = await _reader.ReadAsync();
        var buffer = result.Buffer;
        var frames = 0;
        while (FrameReader.TryReadHeader(buffer, int.MaxValue, out _, out var length) && buffer.Length >= 1 + length)
        {
            buffer = buffer.Slice(1 + length);
            frames++;
        }

        _reader.AdvanceTo(buffer.Start, buffer.End);
        return frames;
    }

    /// <summary>Every read returns the same bytes at once (a zero-byte read returns 0, as a socket with data waiting).</summary>
    private sealed class RepeatingStream(byte[] reply) : Stream
    {
        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            var count = Math.Min(buffer.Length, reply.Length);
            reply.AsSpan(0, count).CopyTo(buffer.Span);
            return ValueTask.FromResult(count);
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    }
}

/// <summary>The SQL lexer and the classifier on pgbench's statements. Expected: no allocation for a statement seen before, or seen with other values.</summary>
[MemoryDiagnoser]
public class ClassifierBench
{
    private static readonly byte[] Select = "SELECT abalance FROM pgbench_accounts WHERE aid = $1"u8.ToArray();
    private static readonly byte[] Update = "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2"u8.ToArray();
    private static readonly byte[] Tricky = Encoding.UTF8.GetBytes("WITH x AS (SELECT $$ FOR UPDATE $$ AS s /* INSERT */) SELECT * FROM x WHERE s <> E'it\\'s'");
    private readonly RoutingOptions _options = RoutingOptions.Default;

    [Benchmark(Description = "lex a SELECT")]
    public int Lex()
    {
        var lexer = new SqlLexer(Select);
        var tokens = 0;
        while (lexer.Next().Kind != TokenKind.End)
        {
            tokens++;
        }

        return tokens;
    }

    [Benchmark(Description = "classify a SELECT (seen before)")]
    public int ClassifySelect() => (int)QueryClassifier.Classify(Select, _options).Target;

    [Benchmark(Description = "classify an UPDATE (seen before)")]
    public int ClassifyUpdate() => (int)QueryClassifier.Classify(Update, _options).Target;

    [Benchmark(Description = "classify a tricky statement (seen before)")]
    public int ClassifyTricky() => (int)QueryClassifier.Classify(Tricky, _options).Target;

    private readonly byte[][] _withValues = [.. Enumerable.Range(0, 1024).Select(aid =>
        Encoding.UTF8.GetBytes($"SELECT abalance FROM pgbench_accounts WHERE aid = {aid * 977 + 1};"))];

    private int _next;

    [Benchmark(Description = "classify pgbench -S's SELECT, another aid each time")]
    public int ClassifyWithValues() => (int)QueryClassifier.Classify(_withValues[_next++ & 1023], _options).Target;
}

/// <summary>SCRAM-SHA-256 towards a client: the PBKDF2 derivation, and a whole exchange with the derived keys cached.</summary>
[MemoryDiagnoser]
public class ScramBench
{
    private readonly Secret _password = new("correct horse battery staple");
    private byte[] _salt = [];

    [GlobalSetup]
    public void Setup() => _salt = RandomNumberGenerator.GetBytes(16);

    [Benchmark(Description = "PBKDF2 4096 rounds (a cache miss)")]
    public byte[] Derive() => ScramVerifier.Create(_password.Reveal(), _salt, 4096).StoredKey;

    [Benchmark(Description = "whole exchange, keys cached")]
    public bool Exchange()
    {
        var verifier = ScramVerifier.ForPassword("bench", _password);
        var server = new ScramServerExchange(verifier, channelBindingHash: null);
        var client = new ScramClientExchange(_password.Reveal(), channelBindingHash: null);
        var mechanism = client.ChooseMechanism(ScramServerExchange.Mechanisms(plus: false));
        var serverFirst = server.HandleClientFirst(mechanism, client.ClientFirstMessage());
        return server.HandleClientFinal(client.HandleServerFirst(serverFirst), out _);
    }

}
