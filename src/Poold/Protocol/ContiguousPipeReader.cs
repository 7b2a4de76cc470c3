using System.Buffers;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using System.Threading.Tasks.Sources;

namespace Poold.Protocol;

/// <summary>
/// A <see cref="PipeReader"/> over a stream (a client's or a backend's socket, with or without TLS) that keeps what it
/// has read in one contiguous array, so every frame is a single span, and that allocates nothing per read: the reader
/// is its own <see cref="IValueTaskSource{TResult}"/>, one read being pending at a time, and a read that completes
/// synchronously returns without one. The pipeline's own stream reader allocates a state machine for every read that
/// waits, which on a proxy is every read.
/// <para>
/// While nothing is buffered the array goes back to the pool and the reader waits with a zero-byte read, so an idle
/// connection holds no buffer. A frame larger than the array grows it (doubling); consumed bytes are compacted away
/// before a read when the free tail is smaller than the minimum read size.
/// </para>
/// </summary>
internal sealed class ContiguousPipeReader : PipeReader, IValueTaskSource<ReadResult>, IDisposable
{
    private readonly Stream _stream;
    private readonly int _bufferSize;
    private readonly int _minimumReadSize;
    private readonly Lock _sync = new();
    private readonly Action _onReadCompleted;
    private ManualResetValueTaskSourceCore<ReadResult> _core;
    private ConfiguredValueTaskAwaitable<int>.ConfiguredValueTaskAwaiter _awaiter;

    /// <summary>
    /// Cancels the stream read in flight (<see cref="CancelPendingRead"/>); replaced once used. Null over a stream that
    /// cancels its reads without a token (<see cref="_tokenless"/>, Poold's own sockets).
    /// </summary>
    private CancellationTokenSource? _cancel;

    /// <summary>
    /// The stream itself when it can cancel its pending read without a token, or the transport under a TLS stream
    /// that can: the TLS stream's read waits in a read of its transport, and ends with an <see cref="IOException"/>
    /// around the transport's <see cref="OperationCanceledException"/> (a record it had partly read stays for its next
    /// read: ContiguousPipeReaderTlsTests). With no token given to anyone, that cancel can only be this reader's. None
    /// to keep per TLS connection either (about 190 bytes with the registration the transport's read makes on it).
    /// </summary>
    private readonly ITokenlessReadCancel? _tokenless;
    private CancellationToken _callerToken;
    private CancellationTokenRegistration _callerRegistration;

    private byte[]? _buffer;
    private int _start;
    private int _end;

    /// <summary>Index in <see cref="_buffer"/> up to which the caller has looked: a read waits for bytes beyond it.</summary>
    private int _examined;
    private bool _reading;
    private bool _zeroByteRead;

    /// <summary>The zero-byte wait has ended: the next read takes the bytes.</summary>
    private bool _dataWaiting;
    private bool _cancelNext;

    /// <summary>A cancel was asked of the stream for the read in flight (tokenless streams: see <see cref="Cancel"/>).</summary>
    private bool _cancelAsked;
    private bool _streamEnded;
    private bool _completed;

    /// <param name="transport">
    /// The transport under <paramref name="stream"/> when that is a TLS stream (a session's <see cref="Io.SocketStream"/>),
    /// to cancel reads through: see <see cref="_tokenless"/>.
    /// </param>
    public ContiguousPipeReader(Stream stream, int bufferSize, int minimumReadSize, ITokenlessReadCancel? transport = null)
    {
        _stream = stream;
        _bufferSize = bufferSize;
        _minimumReadSize = minimumReadSize;
        _onReadCompleted = OnReadCompleted;
        _core.RunContinuationsAsynchronously = false;
        _tokenless = stream as ITokenlessReadCancel ?? transport;
        _cancel = _tokenless is null ? new CancellationTokenSource() : null;
    }

    public override ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_completed, this);
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled<ReadResult>(cancellationToken);
        }

        lock (_sync)
        {
            if (_reading)
            {
                throw new InvalidOperationException("a read is already pending on this reader");
            }

            if (_cancelNext)
            {
                _cancelNext = false;
                return ValueTask.FromResult(Result(canceled: true));
            }

            if (_end > _examined || _streamEnded)
            {
                return ValueTask.FromResult(Result(canceled: false));
            }

            _reading = true;
        }

        _core.Reset();
        _callerToken = cancellationToken;
        if (cancellationToken.CanBeCanceled)
        {
            _callerRegistration = cancellationToken.UnsafeRegister(static state => ((ContiguousPipeReader)state!).CancelStreamRead(), this);
        }

        return ReadMore(synchronousCaller: true) is { } done ? ValueTask.FromResult(done) : new ValueTask<ReadResult>(this, _core.Version);
    }

    /// <summary>
    /// Reads until there are new bytes (a zero-byte read first when nothing is buffered), the stream ends, or the read is
    /// cancelled. Returns the result when it came synchronously; otherwise a completion continues it later and returns null.
    /// </summary>
    private ReadResult? ReadMore(bool synchronousCaller)
    {
        while (true)
        {
            ValueTask<int> read;
            try
            {
                _zeroByteRead = _start == _end && !_dataWaiting;
                _dataWaiting = false;
                if (_zeroByteRead)
                {
                    ReleaseBuffer();
                    read = _stream.ReadAsync(Memory<byte>.Empty, StreamToken);
                }
                else
                {
                    read = _stream.ReadAsync(FreeSpace(), StreamToken);
                }
            }
            catch (Exception e)
            {
                return Finish(null, e, synchronousCaller);
            }

            if (!read.IsCompleted)
            {
                _awaiter = read.ConfigureAwait(false).GetAwaiter();
                _awaiter.UnsafeOnCompleted(_onReadCompleted);
                return null;
            }

            int count;
            try
            {
                count = read.GetAwaiter().GetResult();
            }
            catch (Exception e)
            {
                return Finish(null, e, synchronousCaller);
            }

            if (Advance(count) is { } result)
            {
                return Finish(result, null, synchronousCaller);
            }
        }
    }

    /// <summary>The token the stream's reads take: none where the stream cancels them itself.</summary>
    private CancellationToken StreamToken => _cancel?.Token ?? CancellationToken.None;

    private void OnReadCompleted()
    {
        int count;
        try
        {
            count = _awaiter.GetResult();
        }
        catch (Exception e)
        {
            Finish(null, e, synchronousCaller: false);
            return;
        }

        _awaiter = default;
        if (Advance(count) is { } result)
        {
            Finish(result, null, synchronousCaller: false);
            return;
        }

        ReadMore(synchronousCaller: false);
    }

    /// <summary>Takes in <paramref name="count"/> bytes read; null when the read was the zero-byte wait and the real read comes next.</summary>
    private ReadResult? Advance(int count)
    {
        if (_zeroByteRead)
        {
            _zeroByteRead = false;
            _dataWaiting = true;
            return null;
        }

        if (count == 0)
        {
            _streamEnded = true;
        }

        _end += count;
        return Result(canceled: false);
    }

    /// <summary>Ends a read with its result or failure: returned to a synchronous caller, or completes the pending value task.</summary>
    private ReadResult? Finish(ReadResult? result, Exception? error, bool synchronousCaller)
    {
        _callerRegistration.Dispose();
        _callerRegistration = default;
        lock (_sync)
        {
            _reading = false;
            _cancelAsked = false;
            if (_completed)
            {
                // Completed while this read was under way: a request it left must not outlive the reader (see Complete).
                _tokenless?.WithdrawReadCancel();
            }

            if (error is OperationCanceledException && (_cancel is null || _cancel.IsCancellationRequested)
                || error is IOException { InnerException: OperationCanceledException } && _cancel is null && !ReferenceEquals(_tokenless, _stream))
            {
                // Our own cancellation: CancelPendingRead (a canceled result), or the caller's token (its exception). A
                // stream that cancels without a token is given none: its cancellation can only be ours.
                if (_cancel is not null)
                {
                    _cancel.Dispose();
                    _cancel = new CancellationTokenSource();
                }

                _cancelNext = false;
                error = _callerToken.IsCancellationRequested ? new OperationCanceledException(_callerToken) : null;
                result = error is null ? Result(canceled: true) : null;
            }
        }

        if (error is not null)
        {
            if (synchronousCaller)
            {
                ExceptionDispatchInfoThrow(error);
            }

            _core.SetException(error);
            return null;
        }

        if (synchronousCaller)
        {
            return result;
        }

        // Last: the caller's continuation runs here and may start the next read.
        _core.SetResult(result!.Value);
        return null;
    }

    private static void ExceptionDispatchInfoThrow(Exception error) => System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(error);

    private ReadResult Result(bool canceled)
    {
        var buffer = _buffer is null ? ReadOnlySequence<byte>.Empty : new ReadOnlySequence<byte>(_buffer, _start, _end - _start);
        return new ReadResult(buffer, canceled, _streamEnded);
    }

    /// <summary>Room after the buffered bytes for at least the minimum read: compacts, or grows when the bytes fill the array.</summary>
    private Memory<byte> FreeSpace()
    {
        if (_buffer is null)
        {
            _buffer = ArrayPool<byte>.Shared.Rent(_bufferSize);
            _start = _end = _examined = 0;
        }
        else if (_buffer.Length - _end < _minimumReadSize)
        {
            var length = _end - _start;
            var target = length + _minimumReadSize <= _buffer.Length ? _buffer : Rent(Math.Max(_buffer.Length * 2, length + _minimumReadSize));
            Buffer.BlockCopy(_buffer, _start, target, 0, length);
            if (!ReferenceEquals(target, _buffer))
            {
                Return(_buffer);
                _buffer = target;
            }

            _examined -= _start;
            _start = 0;
            _end = length;
        }

        return _buffer.AsMemory(_end);
    }

    /// <summary>
    /// Buffers past this size (one large message) come from the heap and go back to the garbage collector, not to the
    /// shared pool, which would keep a few hundred megabytes for the process's life after one large message.
    /// </summary>
    private const int MaxPooledBuffer = 1 << 20;

    private static byte[] Rent(int size) =>
        size <= MaxPooledBuffer ? ArrayPool<byte>.Shared.Rent(size) : GC.AllocateUninitializedArray<byte>(size);

    private static void Return(byte[] buffer)
    {
        if (buffer.Length <= MaxPooledBuffer)
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private void ReleaseBuffer()
    {
        if (_buffer is not null)
        {
            Return(_buffer);
            _buffer = null;
        }

        _start = _end = _examined = 0;
    }

    public override void AdvanceTo(SequencePosition consumed) => AdvanceTo(consumed, consumed);

    public override void AdvanceTo(SequencePosition consumed, SequencePosition examined)
    {
        if (_buffer is null)
        {
            return;
        }

        var consumedAt = Index(consumed);
        var examinedAt = Index(examined);
        if (consumedAt < _start || consumedAt > _end || examinedAt < consumedAt || examinedAt > _end)
        {
            throw new InvalidOperationException("the position is not in the last buffer read");
        }

        _start = consumedAt;
        _examined = examinedAt;
        if (_start == _end && !_reading)
        {
            ReleaseBuffer();
        }
    }

    private int Index(SequencePosition position) =>
        ReferenceEquals(position.GetObject(), _buffer) ? position.GetInteger() & int.MaxValue
            : position.GetObject() is null ? _start
            : throw new InvalidOperationException("the position is not in the last buffer read");

    public override bool TryRead(out ReadResult result)
    {
        ObjectDisposedException.ThrowIf(_completed, this);
        lock (_sync)
        {
            if (!_reading && (_cancelNext || _end > _examined || _streamEnded))
            {
                result = Result(canceled: _cancelNext);
                _cancelNext = false;
                return true;
            }
        }

        result = default;
        return false;
    }

    public override void CancelPendingRead() => Cancel(evenWithoutRead: true);

    private void CancelStreamRead() => Cancel(evenWithoutRead: false);

    /// <summary>
    /// Cancels the stream read in flight, outside the lock: the read may complete, and its caller's continuation run,
    /// inside <see cref="CancellationTokenSource.Cancel()"/>. Without a read, <paramref name="evenWithoutRead"/> makes the
    /// next read return canceled.
    /// </summary>
    private void Cancel(bool evenWithoutRead)
    {
        CancellationTokenSource? inFlight = null;
        var reading = false;
        lock (_sync)
        {
            if (_reading && _tokenless is not null && _cancelAsked)
            {
                // Already asked for this read: one request ends it (a second would cancel the next read too).
                return;
            }

            if (_reading)
            {
                reading = true;
                _cancelAsked = true;
                inFlight = _cancel;
            }
            else if (evenWithoutRead)
            {
                _cancelNext = true;
            }
        }

        if (reading && _tokenless is not null)
        {
            // Kept by the stream until a read of it ends canceled, as a cancelled token would be: a read that this reader
            // starts after a wait that ended otherwise (its zero-byte read) is canceled at once.
            _tokenless.CancelPendingRead();
            lock (_sync)
            {
                if (_completed && !_reading)
                {
                    // Completed meanwhile, the read over: the request must not outlive this reader (see Complete).
                    _tokenless.WithdrawReadCancel();
                }
            }

            return;
        }

        try
        {
            inFlight?.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // Another cancellation ended that read first.
        }
    }

    public override void Complete(Exception? exception = null)
    {
        if (_completed)
        {
            return;
        }

        _completed = true;
        lock (_sync)
        {
            if (!_reading)
            {
                ReleaseBuffer();
                _cancel?.Dispose();

                // A cancel that raced a read's completion is kept by the stream for its next read. The next reader is
                // another (the session's last words to a client read its socket directly): withdrawn. Under the lock,
                // as in Cancel and Finish: whichever of them comes last, with no read under way, withdraws it.
                _tokenless?.WithdrawReadCancel();
            }
        }
    }

    /// <summary>The same as <see cref="Complete"/>.</summary>
    public void Dispose() => Complete();

    ReadResult IValueTaskSource<ReadResult>.GetResult(short token) => _core.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource<ReadResult>.GetStatus(short token) => _core.GetStatus(token);

    void IValueTaskSource<ReadResult>.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);
}
