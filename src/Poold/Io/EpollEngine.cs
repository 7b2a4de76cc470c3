using System.Runtime.InteropServices;

namespace Poold.Io;

/// <summary>
/// Poold's own socket event loop on Linux: a few event threads (one per core, at most four), each waiting in
/// <c>epoll_wait</c> on an epoll instance of its own. A <see cref="SocketStream"/> is registered once, round-robin,
/// edge-triggered for input, output and hang-up; an event sets the stream's readiness flags and completes the read or
/// write parked on it, whose continuation runs right there, on the event thread (as .NET's engine does with inline
/// completions, see Hosting/SocketTuning): nothing may block on these threads.
/// <para>
/// An event carries no pointer: its data is a registration token, the slot index in the low 32 bits and the slot's
/// generation in the high 32. The slot holds the stream; a stream freed (and its slot reused) after epoll_wait returned
/// one of its events no longer carries that token, and the event is dropped. The table grows in fixed chunks that never
/// move, so the event threads read it without a lock; registering and unregistering (once per connection) take one.
/// </para>
/// </summary>
internal sealed unsafe class EpollEngine
{
    private const int ChunkBits = 10;
    private const int ChunkSize = 1 << ChunkBits;
    private const int MaxEvents = 256;

    private static readonly Lazy<EpollEngine> SharedEngine = new(() => new EpollEngine(Math.Clamp(Environment.ProcessorCount, 1, 4)));

    /// <summary>The process's engine, started at first use.</summary>
    public static EpollEngine Shared => SharedEngine.Value;

    private readonly int[] _epollFds;
    private readonly Lock _slotsLock = new();

    /// <summary>Chunks of slots; replaced by a longer array on growth, the chunks themselves shared and never moved.</summary>
    private SocketStream?[][] _chunks = [];
    private uint[][] _generations = [];
    private readonly Stack<int> _free = new();
    private int _nextSlot;
    private int _nextThread;
    private int _registered;

    private EpollEngine(int threads)
    {
        _epollFds = new int[threads];
        for (var i = 0; i < threads; i++)
        {
            var fd = EpollNative.Create();
            if (fd < 0)
            {
                throw new IOException($"epoll_create1 failed: errno {Marshal.GetLastPInvokeError()}");
            }

            _epollFds[i] = fd;
        }

        for (var i = 0; i < threads; i++)
        {
            var epfd = _epollFds[i];
            new Thread(() => Loop(epfd)) { IsBackground = true, Name = $"poold epoll {i}" }.Start();
        }
    }

    public int ThreadCount => _epollFds.Length;

    /// <summary>Streams registered now (for tests and diagnostics).</summary>
    public int Registered => Volatile.Read(ref _registered);

    /// <summary>
    /// How many registered streams satisfy <paramref name="match"/> (for tests and diagnostics: a count of all streams
    /// would include other instances' sockets, and ones being released). Reads the slots without the lock.
    /// </summary>
    public int Count(Func<SocketStream, bool> match)
    {
        var count = 0;
        foreach (var chunk in Volatile.Read(ref _chunks))
        {
            foreach (var stream in chunk)
            {
                if (stream is not null && match(stream))
                {
                    count++;
                }
            }
        }

        return count;
    }

    /// <summary>
    /// Takes a free slot and an event thread (round-robin) and returns the slot's token and that thread's epoll
    /// descriptor. The slot stays empty, so no event is delivered, until <see cref="Publish"/>.
    /// </summary>
    public (ulong Token, int EpollFd) Reserve()
    {
        int slot;
        uint generation;
        lock (_slotsLock)
        {
            if (!_free.TryPop(out slot))
            {
                slot = _nextSlot++;
                if ((slot >> ChunkBits) >= _chunks.Length)
                {
                    var chunks = new SocketStream?[_chunks.Length + 1][];
                    var generations = new uint[_chunks.Length + 1][];
                    Array.Copy(_chunks, chunks, _chunks.Length);
                    Array.Copy(_generations, generations, _generations.Length);
                    chunks[^1] = new SocketStream?[ChunkSize];
                    generations[^1] = new uint[ChunkSize];
                    _generations = generations;
                    Volatile.Write(ref _chunks, chunks);
                }
            }

            generation = _generations[slot >> ChunkBits][slot & (ChunkSize - 1)];
            _registered++;
        }

        var thread = (int)((uint)Interlocked.Increment(ref _nextThread) % (uint)_epollFds.Length);
        return (((ulong)generation << 32) | (uint)slot, _epollFds[thread]);
    }

    /// <summary>Puts <paramref name="stream"/>, whose <see cref="SocketStream.Token"/> is <paramref name="token"/>, in its slot.</summary>
    public void Publish(ulong token, SocketStream stream)
    {
        var slot = (int)(uint)token;
        Volatile.Write(ref Volatile.Read(ref _chunks)[slot >> ChunkBits][slot & (ChunkSize - 1)], stream);
    }

    /// <summary>Starts watching <paramref name="fd"/>: edge-triggered input, output and hang-up, with the slot's token as data.</summary>
    public static int Watch(int epollFd, int fd, ulong token) =>
        EpollNative.Control(epollFd, EpollNative.CtlAdd, fd, EpollNative.EpollIn | EpollNative.EpollOut | EpollNative.EpollRdHup | EpollNative.EpollEt, token);

    /// <summary>Stops watching <paramref name="fd"/> (before it is closed, so a reused descriptor number is not watched for the old stream).</summary>
    public static void Unwatch(int epollFd, int fd) => EpollNative.Control(epollFd, EpollNative.CtlDel, fd, 0, 0);

    /// <summary>Frees the slot of <paramref name="token"/>: its generation moves on, so events still in flight for it are dropped.</summary>
    public void Release(ulong token)
    {
        var slot = (int)(uint)token;
        lock (_slotsLock)
        {
            ref var generation = ref _generations[slot >> ChunkBits][slot & (ChunkSize - 1)];
            if (generation != (uint)(token >> 32))
            {
                return;
            }

            Volatile.Write(ref _chunks[slot >> ChunkBits][slot & (ChunkSize - 1)], null);
            generation++;
            _free.Push(slot);
            _registered--;
        }
    }

    private SocketStream? Find(ulong token)
    {
        var slot = (int)(uint)token;
        var chunks = Volatile.Read(ref _chunks);
        if ((slot >> ChunkBits) >= chunks.Length)
        {
            return null;
        }

        var stream = Volatile.Read(ref chunks[slot >> ChunkBits][slot & (ChunkSize - 1)]);
        return stream is not null && stream.Token == token ? stream : null;
    }

    private void Loop(int epfd)
    {
        var size = EpollNative.EventSize;
        var offset = EpollNative.DataOffset;
        var events = (byte*)NativeMemory.Alloc((nuint)(MaxEvents * size));
        while (true)
        {
            var n = EpollNative.EpollWait(epfd, events, MaxEvents, -1);
            if (n < 0)
            {
                if (Marshal.GetLastPInvokeError() == EpollNative.Eintr)
                {
                    continue;
                }

                // Not expected for a valid epoll descriptor; keep the thread alive rather than spin.
                Thread.Sleep(10);
                continue;
            }

            for (var i = 0; i < n; i++)
            {
                var e = events + (i * size);
                if (Find(*(ulong*)(e + offset)) is not { } stream)
                {
                    continue;
                }

                try
                {
                    stream.OnEvents(*(uint*)e);
                }
                catch (Exception)
                {
                    // A continuation that escaped its own error handling (a state machine captures its exceptions, so
                    // this is a bug): the other sockets of this thread must go on being served.
                }
            }
        }
    }
}
