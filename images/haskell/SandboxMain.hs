{-# LANGUAGE RecordWildCards #-}

-- The program's entry point, compiled with the user's Main through `ghc -main-is SandboxMain`.
--
-- GHC block-buffers stdout on a pipe, so a prompt printed with putStr would sit in the buffer
-- while getLine blocks. This gives stdout what a terminal would: line buffering, and a flush
-- before stdin waits for input (as C's stdio does), by reading stdin through a device that
-- flushes stdout first. Unbuffered stdout would do too, but GHC then writes a byte at a time.
module SandboxMain (main) where

import Control.Concurrent.MVar (modifyMVar_)
import Control.Exception (IOException, handle)
import Data.Typeable (cast)
import qualified GHC.IO.BufferedIO as Buffered
import qualified GHC.IO.Device as Device
import GHC.IO.FD (FD)
import GHC.IO.Handle.Types (Handle (..), Handle__ (..))
import qualified Main
import System.IO (BufferMode (LineBuffering), hFlush, hSetBuffering, stdin, stdout)

main :: IO ()
main = do
  hSetBuffering stdout LineBuffering
  flushStdoutBeforeReading
  _ <- Main.main
  return ()

-- | Swap stdin's device for one that flushes stdout before every read; stdin keeps its buffer,
-- encoding and mode. A stdin that is not a plain file descriptor is left as it is.
flushStdoutBeforeReading :: IO ()
flushStdoutBeforeReading = case stdin of
  FileHandle _ var -> modifyMVar_ var $ \Handle__ {..} ->
    return $ case cast haDevice of
      Just fd -> Handle__ {haDevice = FlushingFD fd, ..}
      Nothing -> Handle__ {..}
  DuplexHandle {} -> return ()

newtype FlushingFD = FlushingFD FD

-- A closed or broken stdout is the program's own business: its next write reports it.
flushStdout :: IO ()
flushStdout = handle (\e -> const (return ()) (e :: IOException)) (hFlush stdout)

instance Device.RawIO FlushingFD where
  read (FlushingFD fd) = \buf off len -> flushStdout >> Device.read fd buf off len
  readNonBlocking (FlushingFD fd) = \buf off len -> flushStdout >> Device.readNonBlocking fd buf off len
  write (FlushingFD fd) = Device.write fd
  writeNonBlocking (FlushingFD fd) = Device.writeNonBlocking fd

instance Device.IODevice FlushingFD where
  ready (FlushingFD fd) = Device.ready fd
  close (FlushingFD fd) = Device.close fd
  isTerminal (FlushingFD fd) = Device.isTerminal fd
  isSeekable (FlushingFD fd) = Device.isSeekable fd
  seek (FlushingFD fd) = Device.seek fd
  tell (FlushingFD fd) = Device.tell fd
  getSize (FlushingFD fd) = Device.getSize fd
  setSize (FlushingFD fd) = Device.setSize fd
  setEcho (FlushingFD fd) = Device.setEcho fd
  getEcho (FlushingFD fd) = Device.getEcho fd
  setRaw (FlushingFD fd) = Device.setRaw fd
  devType (FlushingFD fd) = Device.devType fd
  dup (FlushingFD fd) = FlushingFD <$> Device.dup fd
  dup2 (FlushingFD a) (FlushingFD b) = FlushingFD <$> Device.dup2 a b

instance Buffered.BufferedIO FlushingFD where
  newBuffer (FlushingFD fd) = Buffered.newBuffer fd
  fillReadBuffer (FlushingFD fd) buf = flushStdout >> Buffered.fillReadBuffer fd buf
  fillReadBuffer0 (FlushingFD fd) buf = flushStdout >> Buffered.fillReadBuffer0 fd buf
  emptyWriteBuffer (FlushingFD fd) = Buffered.emptyWriteBuffer fd
  flushWriteBuffer (FlushingFD fd) = Buffered.flushWriteBuffer fd
  flushWriteBuffer0 (FlushingFD fd) = Buffered.flushWriteBuffer0 fd
